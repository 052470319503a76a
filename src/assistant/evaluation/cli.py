"""`assistant eval` and `assistant bench`: registered in assistant.cli.EXTRA_COMMANDS."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..cli import EXTRA_COMMANDS
from ..settings import Settings

DEFAULT_CONFIGS = ["extractive", "extractive:hybrid=false", "extractive:sentence_search=false",
                   "extractive:top_k=3"]


def configure_eval(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Run one or more configurations over a question set, beside the naive llama-index "
        "baseline, and write a Markdown report, a PNG chart and a JSON file with every item.")
    p.add_argument("--config", dest="configs", action="append", metavar="SPEC",
                   help="a configuration: GENERATOR[:setting=value,...], e.g. extractive, "
                        "extractive:hybrid=false, extractive:top_k=3, local; repeat to compare "
                        f"(default: {', '.join(DEFAULT_CONFIGS)})")
    p.add_argument("--set", dest="question_set", type=Path, default=None,
                   help="question set JSONL (default: eval/questions.jsonl)")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: eval/reports)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the naive llama-index baseline")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="keep the evaluation indexes here and reuse them on the next run "
                        "(default: a temporary folder, removed afterwards)")
    p.add_argument("--source", dest="sources", action="append", type=Path, default=None,
                   help="documents to ingest (default: the corpus folder, plus "
                        "../shared/related for a set whose items name a document)")
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these item ids")
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="run a deterministic sample of N items spread over the categories "
                        "(for slow language-model configurations)")
    p.add_argument("--name", default=None,
                   help="report file name without extension (default: eval-<set name>)")
    p.add_argument("--failures", type=Path, default=None,
                   help="also write the failing items, as plain text, to this file")
    p.add_argument("--thresholds", type=Path, default=None,
                   help="exit 1 when the first configuration falls below these thresholds "
                        "(e.g. eval/thresholds.toml)")
    p.add_argument("--no-support-validation", action="store_true",
                   help="skip validating the citation-support check on eval/support_pairs.jsonl")


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from . import report, support_check
    from .dataset import default_eval_dir, load_items, load_support_pairs, related_dir
    from .runner import Config, IndexCache, run_all, sample
    from .thresholds import Thresholds

    eval_dir = default_eval_dir()
    qset: Path = args.question_set or eval_dir / "questions.jsonl"
    out_dir: Path = args.out or eval_dir / "reports"
    items = load_items(qset)
    if args.only:
        wanted = set(args.only)
        items = [i for i in items if i.id in wanted]
    if args.sample:
        items = sample(items, args.sample)
    try:
        configs = [Config.parse(s) for s in (args.configs or DEFAULT_CONFIGS)]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.no_baseline:
        for gen in dict.fromkeys(c.generator for c in configs if not c.baseline):
            base = Config.parse("baseline" if gen == "extractive" else f"baseline:{gen}")
            if base not in configs:
                configs.append(base)

    corpus = settings.corpus_dir
    if not corpus.exists() and (eval_dir.parent / corpus).exists():
        corpus = eval_dir.parent / corpus  # run from outside the checkout
    sources: list[Path] = list(args.sources or [corpus])
    rel = related_dir()
    if args.sources is None and any(i.document for i in items):
        if rel is None:
            print("error: this set needs the related texts: put them in ../shared/related "
                  "next to the checkout, or set ASSISTANT_SHARED_DIR to a folder holding "
                  "related/", file=sys.stderr)
            return 2
        sources.append(rel)
    if rel is not None and any(Path(s).resolve() == rel.resolve() for s in sources):
        # unans-03 is answered by the NIS 2 text: only a refusal when it is not ingested.
        items = [i for i in items if not (i.id == "unans-03" and not i.document)]

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="assistant-eval-"))
    cache = IndexCache(work, sources, settings)

    def bar(config: Config, total: int) -> Any:
        progress = tqdm(total=total, desc=config.name[:40], unit="q", file=sys.stderr,
                        leave=True)
        state = {"ok": 0, "n": 0}

        def on_item(result: Any) -> None:
            state["n"] += 1
            state["ok"] += int(result.correct)
            progress.set_postfix_str(f"correct {state['ok']}/{state['n']}", refresh=False)
            progress.update(1)
            if state["n"] == total:
                progress.close()
        return on_item

    started = dt.datetime.now(dt.UTC)

    commit = report.git_commit(eval_dir.parent)  # the code as it was when the run began
    try:
        print(f"indexing {', '.join(map(str, sources))} ...", file=sys.stderr)
        runs = run_all(configs, items, settings, cache, bar)
        support = None
        if not args.no_support_validation:
            from ..embeddings import load_embedder

            pairs = load_support_pairs(eval_dir / "support_pairs.jsonl")
            support = support_check.validate(pairs, load_embedder(settings.embedding_model).embed)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    stem = args.name or "eval-" + qset.stem
    meta = {
        "question set": f"{qset.name} ({len(items)} items)",
        "sources": ", ".join(_show_path(s) for s in sources),
        "index": "; ".join(f"{v['embedding_model']}: {v['documents']} documents, "
                           f"{v['chunks']} chunks" for v in cache.info.values()),
        "generated": started.strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "command": "assistant eval " + " ".join(
            f"--config {c.name}" for c in configs if not c.baseline)
        + (f" --set {_show_path(qset)}" if args.question_set else "")
        + (f" --sample {args.sample}" if args.sample else "")
        + (" --no-baseline" if args.no_baseline else ""),
    }
    title = f"Evaluation: {qset.name}"
    paths = report.write(out_dir, stem, title, runs, meta, support)
    if args.failures:
        args.failures.write_text(report.failures_text(runs), encoding="utf-8")
    for run in runs:
        if run.skipped:
            print(f"{run.config.name}: skipped: {run.skipped}")
            continue
        s = run.summary
        print(f"{run.config.name}: must-contain {_f(s['must_contain_accuracy'])}, "
              f"hit@5 {_f(s['hit@5'])}, citation precision {_f(s['citation_precision'])}, "
              f"supported sentences {_f(s['supported_sentence_share'])}, refusal recall "
              f"{_f(s['refusal_recall'])}, wrongly refused {_f(s['wrongly_refused'])}, "
              f"follow-ups {s['followups_correct']}/{s['followups']}, "
              f"total p50 {s['total_p50_ms']:.0f} ms")
    print("report: " + ", ".join(str(p) for p in paths.values()))
    if args.thresholds:
        first = next((r for r in runs if not r.skipped and not r.config.baseline), None)
        if first is None:
            print("error: no configuration ran; thresholds not checked", file=sys.stderr)
            return 1
        problems = Thresholds.load(args.thresholds).violations(first.summary)
        for p in problems:
            print(f"regression: {first.config.name}: {p}", file=sys.stderr)
        return 1 if problems else 0
    return 0


def _f(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}"


def _show_path(p: Path) -> str:
    """A path relative to the working folder (`../shared/related`): reports name no machine's
    absolute paths."""
    import os

    return os.path.relpath(Path(p).resolve(), Path.cwd())


def configure_bench(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Performance benchmark beside the naive llama-index baseline: ingest throughput, "
        "retrieval and answer latency, time to first token, cold start, peak memory.")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: eval/reports)")
    p.add_argument("--synthetic-chunks", type=int, default=5000,
                   help="size of the synthetic corpus in chunks (default 5000; 0 skips it)")
    p.add_argument("--questions", type=int, default=40,
                   help="questions for the latency figures (default 40)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="keep the benchmark's indexes here (default: a temporary folder)")
    p.add_argument("--quick", action="store_true",
                   help="a fast smoke run: 300 synthetic chunks, 10 questions")


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    from . import bench

    return bench.main(args, settings)


EXTRA_COMMANDS["eval"] = ("evaluate answers against the question set; write a report",
                          configure_eval, run_eval)
EXTRA_COMMANDS["bench"] = ("benchmark speed and memory beside the llama-index baseline",
                           configure_bench, run_bench)

from . import chat_bench  # noqa: E402,F401  (registers `assistant bench-chat`)
