"""`assistant bench-repro`: does an answer depend on the questions asked before it?

The default pipeline (local model) answers the same single-turn questions twice in one
process: first in the set's order, then in reverse, so each question follows a different
one the second time. The benchmark counts answers whose text or citations changed, and
self-check probabilities (P("yes") of the check after an answer) that changed in any
digit, and gives the process's peak memory. Writes eval/reports/repro.md and .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..settings import Settings

DEFAULT_LIMIT = 20


class _Probabilities:
    """Wraps the model and keeps every self-check probability of the current question."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def yes_probability(self, messages: Any, **kwargs: Any) -> float:
        p = float(self.inner.yes_probability(messages, **kwargs))
        self.seen.append(p)
        return p


def _fingerprint(answer: Any) -> dict[str, Any]:
    return {"answer": answer.answer, "refused": answer.refused,
            "citations": [[c.document, c.start, c.end] for c in answer.citations]}


def compare(ids: list[str], first: dict[str, dict[str, Any]],
            second: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Which answers, and which self-check probabilities, differ between the two runs."""
    def answer(run: dict[str, dict[str, Any]], i: str) -> dict[str, Any]:
        return {k: v for k, v in run[i].items() if k != "p_yes"}

    changed = [i for i in ids if answer(first, i) != answer(second, i)]
    checked = [i for i in ids if first[i]["p_yes"] or second[i]["p_yes"]]
    moved = [i for i in checked if first[i]["p_yes"] != second[i]["p_yes"]]
    return {"questions": len(ids), "answers_changed": len(changed), "changed": changed,
            "self_checks": len(checked), "self_checks_changed": len(moved), "moved": moved}


def run(settings: Settings, *, questions: Path | None = None, limit: int = DEFAULT_LIMIT,
        data_dir: Path | None = None) -> dict[str, Any]:
    from ..core import Assistant
    from . import report
    from .chat_bench import bench_model, beside_eval
    from .dataset import default_eval_dir, load_items
    from .runner import IndexCache

    eval_dir = default_eval_dir()
    qset = questions or eval_dir / "questions.jsonl"
    items = [i for i in load_items(qset) if i.question.strip() and not i.history][:limit]
    corpus = beside_eval(settings.corpus_dir)
    work = data_dir or Path(tempfile.mkdtemp(prefix="assistant-repro-"))
    started = dt.datetime.now(dt.UTC)
    runs: dict[str, dict[str, Any]] = {"forward": {}, "backward": {}}
    try:
        index = IndexCache(work, [corpus], settings).data_dir(settings.embedding_model)
        model = _Probabilities(bench_model(settings))
        assistant = Assistant(settings.with_overrides(data_dir=index, generator="local"),
                              chat_model=model)
        assistant.warm_up()
        t0 = time.perf_counter()
        for name, order in (("forward", items), ("backward", items[::-1])):
            for n, item in enumerate(order, 1):
                model.seen = []
                got = _fingerprint(assistant.ask(item.question))
                got["p_yes"] = list(model.seen)
                runs[name][item.id] = got
                print(f"[{name} {n}/{len(order)}] {item.id}", file=sys.stderr, flush=True)
        seconds = time.perf_counter() - t0
    finally:
        if data_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    summary = compare([i.id for i in items], runs["forward"], runs["backward"])
    summary.update(peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                   seconds=round(seconds, 1))
    meta = {"command": f"assistant bench-repro --limit {limit}"
                       + (f" --set {qset}" if questions else ""),
            "generated": started.strftime("%Y-%m-%d %H:%M UTC"),
            "commit": report.git_commit(eval_dir.parent), "set": qset.name}
    return {"meta": meta, "summary": summary, "runs": runs}


def markdown(result: dict[str, Any]) -> str:
    m, s = result["meta"], result["summary"]
    return "\n".join([
        "# Same question, same answer?", "",
        f"`{m['command']}` at {m['commit'] or 'a tree outside git'}, {m['generated']}; "
        f"{s['questions']} single-turn "
        f"questions of {m['set']}, asked in order and then in reverse in one process "
        f"({s['seconds']} s).", "",
        "| | changed between the two orders |", "| --- | --- |",
        f"| answers (text, refusal or citations) | {s['answers_changed']} of {s['questions']} |",
        f"| self-check P(yes), any digit | {s['self_checks_changed']} of "
        f"{s['self_checks']} questions with a self-check |", "",
        f"Peak memory of the process: {s['peak_rss_mb']} MB.", "",
        f"Changed answers: {', '.join(s['changed']) or 'none'}. Changed self-checks: "
        f"{', '.join(s['moved']) or 'none'}.", ""])


def configure(p: argparse.ArgumentParser) -> None:
    p.description = ("Ask the same questions in order and in reverse through the default "
                     "pipeline and count answers and self-check probabilities that changed; "
                     "writes eval/reports/repro.md and .json.")
    p.add_argument("--set", dest="question_set", type=Path, default=None,
                   help="question set JSONL (default: eval/questions.jsonl)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                   help=f"the first N single-turn questions (default {DEFAULT_LIMIT})")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: eval/reports)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="keep the benchmark's index here (default: a temporary folder)")


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    from .dataset import default_eval_dir

    result = run(settings, questions=args.question_set, limit=args.limit,
                 data_dir=args.data_dir)
    out = args.out or default_eval_dir() / "reports"
    out.mkdir(parents=True, exist_ok=True)
    (out / "repro.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    text = markdown(result)
    (out / "repro.md").write_text(text)
    print(text)
    return 0
