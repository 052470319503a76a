"""`assistant eval` and `assistant bench` (listed in assistant.cli.LAZY_COMMANDS)."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

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
    p.add_argument("--set", dest="question_sets", type=Path, action="append", default=None,
                   help="question set JSONL; repeat to run several side by side (default: "
                        "the development sets eval/questions.jsonl and "
                        "eval/dev2_questions.jsonl and the blind test set "
                        "eval/test_questions.jsonl, with a comparison report)")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: eval/reports)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the naive llama-index baseline")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="keep the evaluation indexes here (one folder per set) and reuse "
                        "them on the next run "
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
                   help="also write the failing items, as plain text, to this file (with "
                        "several sets, one file per set, the set's name appended)")
    p.add_argument("--thresholds", type=Path, default=None,
                   help="exit 1 when the first configuration falls below these thresholds "
                        "(e.g. eval/thresholds.toml)")
    p.add_argument("--no-support-validation", action="store_true",
                   help="skip validating the citation-support check on eval/support_pairs.jsonl")


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    from .dataset import default_eval_dir
    from .runner import Config

    eval_dir = default_eval_dir()
    sets: list[Path] = args.question_sets or [eval_dir / "questions.jsonl",
                                              eval_dir / "dev2_questions.jsonl",
                                              eval_dir / "test_questions.jsonl"]
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
    out_dir: Path = args.out or eval_dir / "reports"
    done: list[tuple[str, Any]] = []
    code = 0
    for n, qset in enumerate(sets):
        runs = _run_set(qset, configs, args, settings, eval_dir, out_dir)
        if runs is None:
            return 2
        done.append((qset.stem, runs))
        if args.thresholds and n == 0:
            code = _check_thresholds(args.thresholds, runs)
    if len(done) > 1:
        from . import report

        path = report.write_comparison(out_dir, done, report.git_commit(eval_dir.parent))
        print(f"development vs. test: {path}")
    return code


def _check_thresholds(path: Path, runs: Any) -> int:
    from .thresholds import Thresholds

    first = next((r for r in runs if not r.skipped and not r.config.baseline), None)
    if first is None:
        print("error: no configuration ran; thresholds not checked", file=sys.stderr)
        return 1
    problems = Thresholds.load(path).violations(first.summary)
    for p in problems:
        print(f"regression: {first.config.name}: {p}", file=sys.stderr)
    return 1 if problems else 0


def _run_set(qset: Path, configs: list[Any], args: argparse.Namespace, settings: Settings,
             eval_dir: Path, out_dir: Path) -> Any:
    from tqdm import tqdm

    from . import report, support_check
    from .dataset import load_items, load_support_pairs, related_dir
    from .runner import IndexCache, run_all, sample

    items = load_items(qset)
    if args.only:
        wanted = set(args.only)
        items = [i for i in items if i.id in wanted]
    if args.sample:
        items = sample(items, args.sample)

    corpus = settings.corpus_dir
    if not corpus.exists() and (eval_dir.parent / corpus).exists():
        corpus = eval_dir.parent / corpus  # run from outside the checkout
    sources: list[Path] = list(args.sources or [corpus])
    if args.sources is None and any(i.document for i in items):
        rel = related_dir()
        if rel is None:
            print(f"error: {qset.name} needs the related texts: put them in ../shared/related "
                  "next to the checkout, or set ASSISTANT_SHARED_DIR to a folder holding "
                  "related/", file=sys.stderr)
            return None
        sources.append(rel)

    work = args.work_dir / qset.stem if args.work_dir else \
        Path(tempfile.mkdtemp(prefix="assistant-eval-"))
    cache = IndexCache(work, sources, settings)

    def bar(config: Any, total: int) -> Any:
        progress = tqdm(total=total, desc=f"{qset.stem}: {config.name}"[:40], unit="q",
                        file=sys.stderr, leave=True)
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
            support = support_check.validate(pairs, load_embedder(
                settings.embedding_model, settings.embedding_backend, settings.onnx_dir()).embed)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    stem = (args.name + ("" if len(args.question_sets or []) < 2 else f"-{qset.stem}")
            if args.name else "eval-" + qset.stem)
    meta = {
        "question set": f"{qset.name} ({len(items)} items)",
        "sources": ", ".join(_show_path(s) for s in sources),
        "index": "; ".join(f"{v['embedding_model']}: {v['documents']} documents, "
                           f"{v['chunks']} chunks" for v in cache.info.values()),
        "generated": started.strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "command": "assistant eval " + " ".join(
            f"--config {c.name}" for c in configs if not c.baseline)
        + f" --set {_show_path(qset)}"
        + (f" --sample {args.sample}" if args.sample else "")
        + (" --no-baseline" if args.no_baseline else ""),
    }
    title = f"Evaluation: {qset.name}"
    paths = report.write(out_dir, stem, title, runs, meta, support)
    if args.failures:
        several = args.question_sets is None or len(args.question_sets) > 1
        failures = args.failures.with_name(f"{args.failures.stem}-{qset.stem}"
                                           f"{args.failures.suffix}") if several \
            else args.failures
        failures.write_text(report.failures_text(runs), encoding="utf-8")
    for run in runs:
        if run.skipped:
            print(f"{qset.stem}: {run.config.name}: skipped: {run.skipped}")
            continue
        s = run.summary
        print(f"{qset.stem}: {run.config.name}: must-contain {_f(s['must_contain_accuracy'])}, "
              f"hit@5 {_f(s['hit@5'])}, citation correctness "
              f"{_f(s['citation_correctness'])}, refusal recall "
              f"{_f(s['refusal_recall'])}, wrongly refused {_f(s['wrongly_refused'])}, "
              f"follow-ups {s['followups_correct']}/{s['followups']}, "
              f"ttft p50 {s['ttft_p50_ms']:.0f} ms, total p50 {s['total_p50_ms']:.0f} ms")
    print("report: " + ", ".join(str(p) for p in paths.values()))
    return runs


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
    p.add_argument("--scale", type=lambda v: [int(x) for x in v.split(",")], default=None,
                   metavar="N[,M...]",
                   help="the scale benchmark instead: at each size (chunks), ingest time and "
                   "memory, server start-up and memory, warm latency; the indexes are kept in "
                   "--work-dir (default data_dir/bench) and reused (e.g. --scale 5000,100000)")
    p.add_argument("--rebuild", action="store_true",
                   help="with --scale: build the indexes again instead of reusing them")
    p.add_argument("--backend-ab", type=int, default=0, metavar="CHUNKS",
                   help="with or without --scale: ingest a CHUNKS-chunk corpus with the torch "
                   "and the ONNX backend alternately (--reps times each) and compare")
    p.add_argument("--reps", type=int, default=3, help="repetitions per backend (default 3)")
    p.add_argument("--name", default=None,
                   help="with --scale: write reports/NAME.md and .json instead of the "
                   "section in reports/bench.md")


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    from . import bench

    return bench.main(args, settings)
