"""Reports: Markdown (a table per configuration), a PNG chart, and JSON with every item."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .runner import RunResult
from .scoring import TARGETS, summarise

# (summary key, label, kind) in the order the tables show them
ROWS: list[tuple[str, str, str]] = [
    ("must_contain_accuracy", "Must-contain accuracy (answerable)", "ratio"),
    ("token_f1", "Token F1 vs reference (answerable)", "ratio"),
    ("followup_accuracy", "Follow-ups correct (second turn)", "ratio"),
    ("hit@1", "Retrieval hit@1", "ratio"),
    ("hit@3", "Retrieval hit@3", "ratio"),
    ("hit@5", "Retrieval hit@5", "ratio"),
    ("hit@10", "Retrieval hit@10", "ratio"),
    ("mrr", "Retrieval MRR", "ratio"),
    ("evidence_recall@5", "Evidence recall@5 (all spans)", "ratio"),
    ("citation_correctness", "Citation correctness (quote overlaps gold evidence)", "ratio"),
    ("citation_recall", "Citation recall (ALCE)", "ratio"),
    ("citation_precision", "Citation precision (ALCE)", "ratio"),
    ("supported_sentence_share", "Supported-sentence share", "ratio"),
    ("citation_precision_proposed", "Citation precision, proposed stricter check", "ratio"),
    ("supported_sentence_share_proposed", "Supported-sentence share, proposed check", "ratio"),
    ("refusal_precision", "Refusal precision", "ratio"),
    ("refusal_recall", "Refusal recall (unanswerable + adversarial)", "ratio"),
    ("wrongly_refused", "Answerable items refused", "ratio"),
    ("crashes", "Crashes", "count"),
    ("ttft_p50_ms", "Time to first token p50", "ms"),
    ("ttft_p95_ms", "Time to first token p95", "ms"),
    ("total_p50_ms", "Total time p50", "ms"),
    ("total_p95_ms", "Total time p95", "ms"),
]

CHART_KEYS = ["must_contain_accuracy", "hit@5", "mrr", "citation_correctness",
              "citation_recall", "citation_precision",
              "supported_sentence_share", "refusal_recall", "followup_accuracy"]


def fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "ratio":
        return f"{value:.3f}"
    if kind == "ms":
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    return str(value)


def target_text(key: str) -> str:
    if key not in TARGETS:
        return ""
    op, bound = TARGETS[key]
    return f"{'≥' if op == '>=' else '≤'} {bound:g}"


def _mark(summary: dict[str, Any], key: str) -> str:
    if key not in TARGETS or summary.get(key) is None:
        return ""
    return " ✓" if summary.get("targets", {}).get(key) else " ✗"


def git_commit(root: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=root, timeout=10, check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, cwd=root, timeout=10,
                               check=False)
        sha = out.stdout.strip()
        return sha + ("+local changes" if dirty.stdout.strip() else "") if sha else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _detail(key: str, s: dict[str, Any]) -> str:
    if key == "must_contain_accuracy":
        return f"{s['answerable']} answerable items"
    if key == "followup_accuracy":
        return f"{s['followups_correct']}/{s['followups']}"
    if key == "citation_correctness":
        return f"mean over {s.get('citation_judged_items', 0)} answered items with evidence"
    if key in ("citation_recall", "citation_precision"):
        return f"mean over {s['answered_items']} answered items"
    if key == "supported_sentence_share":
        return f"{s['answer_sentences']} sentences"
    if key == "refusal_recall":
        return f"of {s['expected_refusals']} items to refuse"
    if key == "refusal_precision":
        return f"{s['refused']} refusals"
    return ""


def markdown(title: str, runs: Sequence[RunResult], meta: dict[str, Any],
             support: dict[str, Any] | None, chart_name: str | None) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if v not in (None, "")]
    lines.append("")
    active = [r for r in runs if not r.skipped]
    if active:
        lines += ["## Summary", ""]
        header = "| Metric | Target | " + " | ".join(f"`{r.config.name}`" for r in active) + " |"
        lines += [header, "|" + " --- |" * (2 + len(active))]
        for key, label, kind in ROWS:
            cells = [fmt(r.summary.get(key), kind) + _mark(r.summary, key) for r in active]
            lines.append(f"| {label} | {target_text(key)} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("✓/✗: the configuration meets / misses the target of the default "
                     "configuration on the blind test set. Latency is per question on this machine "
                     "(time to the first streamed text, and to the final answer).")
        lines.append("")
        if chart_name:
            lines += [f"![metrics per configuration]({chart_name})", ""]
    for r in runs:
        lines += _config_section(r)
    if support:
        lines += support_section(support)
    return "\n".join(lines).rstrip() + "\n"


def _config_section(run: RunResult) -> list[str]:
    c = run.config
    lines = [f"## Configuration `{c.name}`", ""]
    kind = ("naive llama-index baseline (VectorStoreIndex query engine, "
            + ("top-1 node as the answer, no LLM" if c.generator == "extractive"
               else f"same {c.generator} model via a CustomLLM adapter") + ")"
            if c.baseline else f"assistant, generator `{c.generator}`")
    lines.append(f"- kind: {kind}")
    if run.settings:
        lines.append("- settings: " + ", ".join(f"{k}={v}" for k, v in run.settings.items()
                                                 if v not in ("", None)))
    if run.skipped:
        lines += [f"- **skipped**: {run.skipped}", ""]
        return lines
    s = run.summary
    lines.append(f"- items: {s['items']}, run time {run.seconds:.0f} s")
    lines += ["", "| Metric | Value | Detail | Target | Met |", "| --- | --- | --- | --- | --- |"]
    for key, label, fmt_kind in ROWS:
        met = ("" if key not in TARGETS or s.get(key) is None
               else "yes" if s["targets"].get(key) else "**no**")
        lines.append(f"| {label} | {fmt(s.get(key), fmt_kind)} | {_detail(key, s)} | "
                     f"{target_text(key)} | {met} |")
    lines += ["", "Correct items by category:", "", "| Category | Correct | Items |",
              "| --- | --- | --- |"]
    for cat, v in s["by_category"].items():
        lines.append(f"| {cat} | {v['correct']} | {v['items']} |")
    missed = [key for key in TARGETS if s.get(key) is not None and not s["targets"].get(key)]
    if missed:
        lines += ["", "Targets missed: " + ", ".join(
            f"{key} ({fmt(s.get(key), 'ratio')}, target {target_text(key)})" for key in missed)
            + "."]
    failures = [r for r in run.results if r.why]
    if failures:
        lines += ["", f"Items with a problem ({len(failures)}):", "",
                  "| Item | Question | Answer | Why |", "| --- | --- | --- | --- |"]
        for r in failures:
            q = (" / ".join(r.history) + " → " if r.history else "") + r.question
            lines.append(f"| {r.id} | {_cell(q, 90)} | {_cell(r.answer or r.error, 140)} | "
                         f"{_cell(r.why, 80)} |")
    lines.append("")
    return lines


def _cell(text: str, limit: int) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def support_section(v: dict[str, Any]) -> list[str]:
    lx = v["lexical"]

    def row(name: str, c: dict[str, Any]) -> str:
        return (f"| {name} | {c['accuracy']:.3f} | {c['precision']:.3f} | {c['recall']:.3f} | "
                f"{c['f1']:.3f} | {c['tp']} | {c['fp']} | {c['tn']} | {c['fn']} |")

    lines = ["## Citation-support check: validation", "",
             f"On {v['pairs']} hand-labelled sentence/passage pairs ({v['supported']} "
             "supported) from `eval/support_pairs.jsonl`. \"Supported\" is the positive "
             "class.", "",
             "| Check | Accuracy | Precision | Recall | F1 | TP | FP | TN | FN |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    if "in_use" in v:
        lines.append(row("`citations.supports` as in use (score, names, negations, "
                         "quantifiers)", v["in_use"]))
    lines.append(row(f"lexical score alone ≥ {v['threshold']} (share of stemmed content words "
                     "in the passage, every number present)", lx))
    lines.append("")
    kinds = [k for k in ("lexical_sweep", "embedding_sweep", "combined_sweep") if k in v]
    names = {"lexical_sweep": "lexical", "embedding_sweep": "cosine (MiniLM)",
             "combined_sweep": f"lexical ≥ {v['threshold']} AND cosine"}
    lines += ["Threshold sweep (accuracy / precision / recall):", "",
              "| Threshold | " + " | ".join(names[k] for k in kinds) + " |",
              "|" + " --- |" * (1 + len(kinds))]
    for i, t in enumerate(v["lexical_sweep"]):
        cells = []
        for k in kinds:
            cell = v[k][i]
            cells.append(f"{cell['accuracy']:.3f} / {cell['precision']:.3f} / "
                         f"{cell['recall']:.3f}")
        lines.append(f"| {t['threshold']:.2f} | " + " | ".join(cells) + " |")
    pr = v.get("proposed")
    if pr:
        lines += ["", f"Proposed stricter check (`support_check.proposed_supports`: the lexical "
                  f"score at {pr['threshold']}, negations agreeing on both sides, and every "
                  "quantifier of the sentence — all, only, half, … — present in the passage): "
                  f"accuracy {pr['accuracy']:.3f}, precision {pr['precision']:.3f}, recall "
                  f"{pr['recall']:.3f} (TP {pr['tp']}, FP {pr['fp']}, TN {pr['tn']}, "
                  f"FN {pr['fn']}); wrong on {', '.join(pr['errors'])}. Its guards were "
                  "designed after reading these pairs, so these figures are optimistic "
                  "(no held-out pairs)."]
    b = v["best"]
    lines += ["", f"Best variant on these pairs: {b['check']} at {b['threshold']:.2f} "
              f"(accuracy {b['accuracy']:.3f}, precision {b['precision']:.3f}, "
              f"recall {b['recall']:.3f})."]
    if v["errors"]:
        if "in_use" in v:
            lines += ["", "The check in use gets these pairs wrong: "
                      + ", ".join(v["in_use"]["errors"]) + "."]
        lines += ["", "Pairs the lexical score alone gets wrong at the threshold:", "",
                  "| Pair | Label | Score | Sentence |", "| --- | --- | --- | --- |"]
        for e in v["errors"]:
            lines.append(f"| {e['id']} | {'supported' if e['label'] else 'unsupported'} | "
                         f"{e['score']:.2f} | {_cell(e['sentence'], 100)} |")
    lines.append("")
    return lines


def chart(path: Path, runs: Sequence[RunResult], title: str) -> bool:
    active = [r for r in runs if not r.skipped]
    if not active:
        return False
    try:
        import matplotlib
    except ImportError:  # the optional "eval" extra is not installed: no chart
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2),
                                   gridspec_kw={"width_ratios": [3, 1.4]})
    width = 0.8 / len(active)
    xs = range(len(CHART_KEYS))
    for i, r in enumerate(active):
        vals = [r.summary.get(k) for k in CHART_KEYS]
        vals = [0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in vals]
        ax1.bar([x + i * width for x in xs], vals, width, label=r.config.name)
    for j, key in enumerate(CHART_KEYS):
        if key in TARGETS and TARGETS[key][0] == ">=":
            ax1.hlines(TARGETS[key][1], j - 0.1, j + 0.8, colors="black", linestyles="dotted",
                       linewidth=1)
    ax1.set_xticks([x + 0.4 - width / 2 for x in xs])
    ax1.set_xticklabels([k.replace("_", " ") for k in CHART_KEYS], rotation=30, ha="right",
                        fontsize=8)
    ax1.set_ylim(0, 1.22)
    ax1.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax1.set_title("Quality (dotted: target)")
    ax1.legend(fontsize=7, loc="upper center", ncol=min(4, len(active)))
    labels = [r.config.name for r in active]
    p50 = [r.summary.get("total_p50_ms") or 0.0 for r in active]
    p95 = [r.summary.get("total_p95_ms") or 0.0 for r in active]
    ys = range(len(active))
    ax2.barh([y + 0.2 for y in ys], p50, 0.4, label="p50")
    ax2.barh([y - 0.2 for y in ys], p95, 0.4, label="p95")
    ax2.set_yticks(list(ys))
    ax2.set_yticklabels(labels, fontsize=7)
    ax2.set_xlabel("total time per question (ms)")
    ax2.legend(fontsize=7)
    ax2.set_title("Latency")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(out_dir: Path, stem: str, title: str, runs: Sequence[RunResult],
          meta: dict[str, Any], support: dict[str, Any] | None) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{stem}.png"
    has_chart = chart(png, runs, title)
    md = out_dir / f"{stem}.md"
    md.write_text(markdown(title, runs, meta, support, png.name if has_chart else None),
                  encoding="utf-8")
    js = out_dir / f"{stem}.json"
    payload = clean({"meta": meta, "support_validation": support,
                     "runs": [r.to_json() for r in runs]})
    js.write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=str) + "\n",
                  encoding="utf-8")
    paths = {"markdown": md, "json": js}
    if has_chart:
        paths["chart"] = png
    return paths


def load_runs(path: Path) -> tuple[list[RunResult], dict[str, Any], dict[str, Any] | None]:
    """Runs, meta and support validation back from a report's JSON (items re-scored into
    summaries with the current code), so a report can be re-rendered without re-running."""
    from .runner import Config
    from .scoring import ItemResult

    data = json.loads(path.read_text(encoding="utf-8"))
    runs = []
    for r in data["runs"]:
        spec = r["config"]
        config = Config(name=spec, generator=r["generator"],
                        overrides=tuple(r.get("overrides", {}).items()),
                        baseline=r.get("baseline", False))
        results = [ItemResult(**item) for item in r["items"]]
        run = RunResult(config=config, results=results, skipped=r.get("skipped", ""),
                        settings=r.get("settings", {}), seconds=r.get("seconds", 0.0))
        if results:
            run.summary = summarise(results)
        runs.append(run)
    return runs, data.get("meta", {}), data.get("support_validation")


def clean(value: Any) -> Any:
    """JSON-safe: NaN becomes null, tuples lists, paths strings."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def failures_text(runs: Sequence[RunResult]) -> str:
    """Plain text: every failing item of every configuration (for the team)."""
    out = []
    for run in runs:
        if run.skipped:
            out.append(f"== {run.config.name}: skipped ({run.skipped})\n")
            continue
        bad = [r for r in run.results if r.why]
        s = run.summary
        out.append(f"== {run.config.name}: {len(bad)} items with a problem "
                   f"(of {len(run.results)})\n")
        out.append("   " + ", ".join(f"{label.lower()} {fmt(s.get(key), kind)}"
                                     for key, label, kind in ROWS if key in s) + "\n")
        for r in bad:
            q = (" / ".join(r.history) + " -> " if r.history else "") + r.question
            out.append(f"- {r.id} [{r.category}] {q!r}\n  answer: {(r.answer or r.error)!r}\n"
                       f"  why: {r.why}\n"
                       + (f"  rewritten: {r.rewritten_question!r}\n"
                          if r.rewritten_question else ""))
        out.append("")
    return "\n".join(out)


COMPARED = ["must_contain_accuracy", "wrongly_refused", "refusal_recall", "followup_accuracy",
            "citation_correctness", "citation_precision", "hit@5", "ttft_p50_ms",
            "ttft_p95_ms", "total_p50_ms"]


def pooled(runs_per_set: Sequence[Sequence[RunResult]]) -> list[RunResult]:
    """Each configuration's runs over several sets as one run over all their items."""
    out = []
    for first in runs_per_set[0]:
        same = [r for rs in runs_per_set for r in rs
                if r.config.name == first.config.name and not r.skipped]
        if first.skipped or len(same) < len(runs_per_set):
            continue
        results = [x for r in same for x in r.results]
        out.append(replace(first, results=results, summary=summarise(results),
                           seconds=sum(r.seconds for r in same)))
    return out


POOLED = "development (pooled)"


def comparison_markdown(sets: Sequence[tuple[str, Sequence[RunResult]]], commit: str) -> str:
    """Every configuration on every set side by side, with the gap from the first set (the
    development set) to each other one, and correctness per grounding label. With three
    sets or more, every set but the last is development data and the last is the test set:
    the development items pooled make one more column, and the test set's gap from it."""
    labels = dict((k, (label, kind)) for k, label, kind in ROWS)
    names = [s for s, _ in sets]
    described = (f"{', '.join(names)} (the first is the development set: rules, thresholds "
                 "and prompts are tuned on it only)")
    gap_text = "the later set's value minus the development set's."
    if len(sets) >= 3:
        dev, test = names[:-1], names[-1]
        sets = [*sets[:-1], (POOLED, pooled([rs for _, rs in sets[:-1]])), sets[-1]]
        names = [s for s, _ in sets]
        described = (f"{', '.join(dev)} (development: rules, thresholds and prompts are tuned "
                     f"on them only) and {test} (the blind test set)")
        gap_text = (f"a set's value minus the first development set's; in the last column, "
                    f"{test} minus all development items pooled ({' + '.join(dev)}).")
    # Gap columns: (heading, index of the value, index of the base it is measured from).
    gaps_of = [(n, i, 0) for i, n in enumerate(names) if i and n != POOLED]
    if POOLED in names:
        gaps_of.append((f"{names[-1]} − pooled", len(names) - 1, names.index(POOLED)))
    lines = ["# Development set vs. blind test set", "",
             f"- sets: {described}",
             f"- commit: {commit}", "",
             f"Gap: {gap_text} The blind test set was written from the documents alone and "
             "is never edited to suit the system.",
             ""]
    configs = [r.config.name for r in sets[0][1] if not r.skipped]
    for config in configs:
        runs = [next((r for r in rs if r.config.name == config and not r.skipped), None)
                for _, rs in sets]
        lines += [f"## `{config}`", ""]
        lines.append("| Metric | Target | " + " | ".join(names)
                     + "".join(f" | gap ({n})" for n, _, _ in gaps_of) + " |")
        lines.append("|" + " --- |" * (2 + len(names) + len(gaps_of)))
        for key in COMPARED:
            label, kind = labels[key]
            values = [r.summary.get(key) if r else None for r in runs]
            cells = [fmt(v, kind) for v in values]
            gaps = []
            for _, i, j in gaps_of:
                v, base = values[i], values[j]
                if not (isinstance(v, int | float) and isinstance(base, int | float)) \
                        or math.isnan(v) or math.isnan(base):
                    gaps.append("–")
                    continue
                gaps.append(f"{v - base:+.3f}" if kind == "ratio" else f"{v - base:+.0f} ms")
            lines.append(f"| {label} | {target_text(key)} | " + " | ".join(cells)
                         + "".join(f" | {g}" for g in gaps) + " |")
        lines += ["", "Correct answers per grounding label (what the pipeline did):", "",
                  "| Label | " + " | ".join(names) + " |", "|" + " --- |" * (1 + len(names))]
        found = sorted({g for r in runs if r for g in r.summary.get("by_grounding", {})})
        for g in found:
            cells = []
            for r in runs:
                c = (r.summary.get("by_grounding", {}).get(g) if r else None) or {}
                cells.append(f"{c['correct']}/{c['items']} = {c['correct'] / c['items']:.2f}"
                             if c.get("items") else "–")
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_comparison(out_dir: Path, sets: Sequence[tuple[str, Sequence[RunResult]]],
                     commit: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "eval-dev-vs-test.md"
    path.write_text(comparison_markdown(sets, commit), encoding="utf-8")
    return path
