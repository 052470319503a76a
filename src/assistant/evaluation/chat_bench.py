"""`assistant bench-chat`: the side-by-side chat benchmark.

One run, one machine, one in-process local model (a single `LocalLlama`, loaded once) and one
Chroma index (the corpus ingested into a data folder the benchmark manages):

- (a) this pipeline: `Assistant(generator="local", chat_model=<the model>).stream(question)`;
- (b) a plain llama-index `CondensePlusContextChatEngine` over the same Chroma collection
  (`NaiveBaseline`'s `VectorStoreIndex.from_vector_store` with `HuggingFaceEmbedding` of the
  same packaged model), `similarity_top_k = settings.top_k`, the same model through the
  `CustomLLM` adapter of `baseline.py`, streamed with `stream_chat`.

Measured per question and pipeline: time to first token (the first non-empty text piece; it
includes follow-up rewriting / condensing and retrieval), total time, the prompt tokens of the
answer-generating model call (a: `Answer.usage`; b: the model's `last_usage` after the call),
the prompt tokens of every model call of the question (rewrite/condense included), and
llama.cpp's own timings (prompt tokens processed vs. reused from its cache).

Fairness:
- The two pipelines alternate per question, and which one goes first alternates too. The
  local model starts every request from a saved state of its system prompt, the same way
  for both pipelines (see "Prompt caching" in the report). The reused-token counts are
  reported so the effect is visible.
- One warm-up question (not measured) goes through both pipelines first.
- Conversation history (follow-ups) is produced by each pipeline itself, unmeasured, before
  the measured question.

Correctness uses the evaluation's `score_item`: must-contain on answerable items, refusal on
the others. (a)'s refusal is its `Answer.refused`. (b) has no refusal flag: its answer counts
as a refusal when it contains the project's refusal phrase or says the context does not hold
the answer (`baseline.REFUSAL_PATTERNS`, `generative.is_refusal`, or "don't know", which
llama-index's default context prompt asks the model to say) - see `engine_refused`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..settings import Settings
from . import metrics
from .dataset import Item

TTFT_RATIO_TARGET = 1 / 3  # (a)'s TTFT at most a third of (b)'s
WARM_TTFT_TARGET_MS = 5000.0  # (a)'s warm TTFT under 5 s
PIPELINES = ("a", "b")
NAMES = {"a": "(a) this pipeline", "b": "(b) llama-index CondensePlusContextChatEngine"}

_DONT_KNOW = re.compile(r"\b(?:don'?t|do not|does not|doesn'?t) know\b", re.IGNORECASE)


def _why(text: str) -> str:
    """score_item's reason without its retrieval note (this benchmark scores no retrieval,
    and the passages it hands score_item are the cited / given ones, not a top-10)."""
    parts = [p for p in text.split("; ") if not p.startswith("evidence ")]
    return "; ".join(parts)


def engine_refused(text: str) -> bool:
    """Whether a llama-index engine answer is a refusal (it has no refusal flag)."""
    from ..answerers.generative import is_refusal
    from .baseline import REFUSAL_PATTERNS

    return bool(text.strip()) and bool(
        REFUSAL_PATTERNS.search(text) or is_refusal(text) or _DONT_KNOW.search(text))


# -- question selection --------------------------------------------------------------------
def select_items(items: Sequence[Item], answerable: int = 20, followups: int = 3,
                 refuse: int = 6) -> list[Item]:
    """A fixed, stratified subset in file order: `followups` follow-ups, the rest of the
    `answerable` items round-robin over the other answerable categories, and `refuse`
    items round-robin over the refusal categories (unanswerable, adversarial). Blank
    questions are left out: (a) rejects them before any model call, so they time nothing."""
    usable = [i for i in items if i.question.strip()]
    fups = [i for i in usable if i.history and not i.expects_refusal][:followups]
    plain = [i for i in usable if not i.history and not i.expects_refusal]
    refusals = [i for i in usable if i.expects_refusal]
    chosen = fups + _round_robin(plain, max(0, answerable - len(fups)))
    chosen += _round_robin(refusals, refuse)
    order = {i.id: n for n, i in enumerate(items)}
    return sorted(chosen, key=lambda i: order[i.id])


def _round_robin(items: Sequence[Item], n: int) -> list[Item]:
    by_cat: dict[str, list[Item]] = {}
    for i in items:
        by_cat.setdefault(i.category, []).append(i)
    out: list[Item] = []
    depth = 0
    while len(out) < n and any(len(v) > depth for v in by_cat.values()):
        for cat_items in by_cat.values():
            if depth < len(cat_items) and len(out) < n:
                out.append(cat_items[depth])
        depth += 1
    return out


# -- one measurement ------------------------------------------------------------------------
@dataclass
class Measure:
    """One pipeline's answer to one question."""

    pipeline: str
    id: str
    category: str
    question: str
    expect: str
    answer: str = ""
    refused: bool = False
    correct: bool = False
    why: str = ""
    mode: str = ""  # (a): local, or extractive when it answered without the model
    model_called: bool = False  # the answer came from a model generation
    ttft_ms: float | None = None
    total_ms: float | None = None
    prompt_tokens: int | None = None  # the answer-generating call
    prompt_tokens_all: int = 0  # every model call of the measured question
    model_calls: int = 0
    cached_tokens: int | None = None  # llama.cpp: prompt tokens reused (cache_n)
    processed_tokens: int | None = None  # llama.cpp: prompt tokens evaluated (prompt_n)
    prompt_ms: float | None = None  # llama.cpp's prompt processing time
    error: str = ""
    order: int = 0  # 0: ran first for this question, 1: second

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RecordingModel:
    """Wraps the one ChatModel both pipelines share, noting usage and timings per call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _note(self) -> None:
        usage = dict(getattr(self.inner, "last_usage", None) or {})
        timings = dict(getattr(self.inner, "last_timings", None) or {})
        self.calls.append({"usage": usage, "timings": timings})

    def stream(self, messages: Any, **kwargs: Any) -> Iterator[str]:
        def gen() -> Iterator[str]:
            self.inner.last_usage = None
            try:
                yield from self.inner.stream(messages, **kwargs)
            finally:
                self._note()
        return gen()

    def complete(self, messages: Any, **kwargs: Any) -> str:
        self.inner.last_usage = None
        try:
            return str(self.inner.complete(messages, **kwargs))
        finally:
            self._note()

    def take(self) -> list[dict[str, Any]]:
        calls, self.calls = self.calls, []
        return calls


def _apply_calls(m: Measure, calls: list[dict[str, Any]]) -> None:
    m.model_calls = len(calls)
    m.prompt_tokens_all = sum(int(c["usage"].get("prompt_tokens", 0)) for c in calls)
    if calls:
        t = calls[-1]["timings"]
        if "cache_n" in t:
            m.cached_tokens = int(t["cache_n"])
        if "prompt_n" in t:
            m.processed_tokens = int(t["prompt_n"])
        if "prompt_ms" in t:
            m.prompt_ms = float(t["prompt_ms"])


class PipelineA:
    """This project's Assistant, local generator, over the bench index and the shared model."""

    def __init__(self, settings: Settings, model: RecordingModel) -> None:
        from ..core import Assistant

        self.model = model
        self.assistant = Assistant(settings, chat_model=model)
        self.assistant.warm_up()

    def measure(self, item: Item) -> Measure:
        from ..core import Delta, Final, InputError
        from ..types import Message
        from .scoring import cited_evidence, score_item

        m = Measure("a", item.id, item.category, item.question, item.expect)
        history: list[Message] = []
        for turn in item.history:  # unmeasured: the assistant's own earlier answers
            first = self.assistant.ask(turn, history, generator="local")
            history += [Message("user", turn), Message("assistant", first.answer)]
        self.model.take()
        answer = None
        error, crashed = "", False
        t0 = time.perf_counter()
        try:
            for event in self.assistant.stream(item.question, history, generator="local"):
                if isinstance(event, Delta) and m.ttft_ms is None and event.text:
                    m.ttft_ms = (time.perf_counter() - t0) * 1000
                elif isinstance(event, Final):
                    answer = event.answer
        except InputError as exc:
            error = str(exc)
        except Exception as exc:  # a failure is a result
            error, crashed = f"{type(exc).__name__}: {exc}", True
        m.total_ms = (time.perf_counter() - t0) * 1000
        if m.ttft_ms is None:
            m.ttft_ms = m.total_ms
        calls = self.model.take()
        text = answer.answer if answer is not None else ""
        refused = bool(answer.refused) if answer is not None else False
        cites = cited_evidence(answer)
        r = score_item(item, answer=text, refused=refused, citations=cites,
                       retrieved=list(cites.values()), error=error, crashed=crashed)
        m.answer, m.refused, m.correct, m.error = text, r.refused, r.correct, error
        m.why = _why(r.why)
        _apply_calls(m, calls)
        if answer is not None:
            m.mode = answer.mode
            usage = answer.usage or {}
            m.model_called = "prompt_tokens" in usage
            m.prompt_tokens = int(usage.get("prompt_tokens", 0))
        return m


class PipelineB:
    """A plain llama-index CondensePlusContextChatEngine over the same collection."""

    def __init__(self, settings: Settings, model: RecordingModel) -> None:
        from llama_index.core.chat_engine import CondensePlusContextChatEngine

        from .baseline import NaiveBaseline, _chat_model_llm

        self.model = model
        # NaiveBaseline opens the active Chroma collection with ChromaVectorStore and the
        # packaged embedding model through HuggingFaceEmbedding; only its index is used here.
        self.base = NaiveBaseline(settings, chat_model=None)
        self.top_k = settings.top_k
        n_ctx = int(getattr(model.inner, "n_ctx", 2048))
        self.llm = _chat_model_llm(model, settings.llm_max_tokens, n_ctx)
        self.engine = CondensePlusContextChatEngine.from_defaults(
            retriever=self.base.index.as_retriever(similarity_top_k=self.top_k), llm=self.llm)

    def _turn(self, text: str, history: list[Any]) -> tuple[str, float | None, float, Any]:
        t0 = time.perf_counter()
        response = self.engine.stream_chat(text, chat_history=list(history))
        ttft = None
        parts: list[str] = []
        for delta in response.response_gen:
            if ttft is None and delta:
                ttft = (time.perf_counter() - t0) * 1000
            parts.append(delta)
        total = (time.perf_counter() - t0) * 1000
        return "".join(parts).strip(), ttft, total, response

    def measure(self, item: Item) -> Measure:
        from llama_index.core.base.llms.types import ChatMessage, MessageRole

        from .scoring import score_item

        m = Measure("b", item.id, item.category, item.question, item.expect)
        history: list[Any] = []
        error = ""
        crashed = False
        text, sources = "", []
        try:
            for turn in item.history:  # unmeasured: the engine's own earlier answers
                prior, _, _, _ = self._turn(turn, history)
                history += [ChatMessage(role=MessageRole.USER, content=turn),
                            ChatMessage(role=MessageRole.ASSISTANT, content=prior)]
            self.model.take()
            text, ttft, total, response = self._turn(item.question, history)
            m.ttft_ms = ttft if ttft is not None else total
            m.total_ms = total
            sources = [n.node.get_content() for n in response.source_nodes]
        except Exception as exc:  # a failure is a result
            error, crashed = f"{type(exc).__name__}: {exc}", True
        calls = self.model.take()
        _apply_calls(m, calls)
        if calls:
            m.model_called = True
            m.prompt_tokens = int(calls[-1]["usage"].get("prompt_tokens", 0))
        refused = engine_refused(text)
        r = score_item(item, answer=text, refused=refused,
                       citations={i: s for i, s in enumerate(sources, 1)}, retrieved=sources,
                       error=error, crashed=crashed)
        m.answer, m.refused, m.correct, m.error = text, r.refused, r.correct, error
        m.why = _why(r.why)
        m.mode = "llama-index"
        return m


# -- summary and report (pure) --------------------------------------------------------------
def summarise(measures: Sequence[Measure]) -> dict[str, Any]:
    """The figures of one pipeline."""
    timed = [m for m in measures if m.ttft_ms is not None and not m.error]
    answerable = [m for m in measures if m.expect != "refuse"]
    refuse = [m for m in measures if m.expect == "refuse"]
    called = [m for m in measures if m.model_called]
    tokens = [float(m.prompt_tokens or 0) for m in called]
    timed_ans = [m for m in timed if m.expect != "refuse"]

    def pct(vals: list[float], q: float) -> float | None:
        return metrics.percentile(vals, q) if vals else None

    return {
        "items": len(measures),
        "answerable": len(answerable),
        "refuse": len(refuse),
        "model_called": len(called),
        "errors": sum(bool(m.error) for m in measures),
        "ttft_p50_ms": pct([m.ttft_ms or 0.0 for m in timed], 50),
        "ttft_p95_ms": pct([m.ttft_ms or 0.0 for m in timed], 95),
        "total_p50_ms": pct([m.total_ms or 0.0 for m in timed], 50),
        "total_p95_ms": pct([m.total_ms or 0.0 for m in timed], 95),
        "ttft_answerable_p50_ms": pct([m.ttft_ms or 0.0 for m in timed_ans], 50),
        "ttft_answerable_p95_ms": pct([m.ttft_ms or 0.0 for m in timed_ans], 95),
        "prompt_tokens_mean": metrics.mean(tokens) if tokens else None,
        "prompt_tokens_p50": pct(tokens, 50),
        "prompt_tokens_all_mean": (metrics.mean(float(m.prompt_tokens_all) for m in called)
                                   if called else None),
        "cached_tokens_mean": _mean_known([m.cached_tokens for m in called]),
        "processed_tokens_mean": _mean_known([m.processed_tokens for m in called]),
        "prompt_tokens_per_s": _speed(called),
        "must_contain_accuracy": (metrics.mean(m.correct for m in answerable)
                                  if answerable else None),
        "must_contain_correct": sum(m.correct for m in answerable),
        "refusal_accuracy": metrics.mean(m.correct for m in refuse) if refuse else None,
        "refusal_correct": sum(m.correct for m in refuse),
        "correct": sum(m.correct for m in measures),
    }


def _speed(measures: Sequence[Measure]) -> float | None:
    """llama.cpp's prompt processing speed over these answer calls (tokens/s)."""
    done = [m for m in measures if m.processed_tokens and m.prompt_ms]
    ms = sum(m.prompt_ms or 0.0 for m in done)
    return sum(m.processed_tokens or 0 for m in done) / ms * 1000 if ms else None


def _mean_known(values: Sequence[int | None]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return metrics.mean(known) if known else None


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Targets: TTFT(a)/TTFT(b) <= 1/3 (at p50), warm TTFT(a) < 5 s (at p50 and p95), and
    correctness of (a) at least (b)'s."""
    def ratio(x: float | None, y: float | None) -> float | None:
        return x / y if x is not None and y else None

    r50 = ratio(a["ttft_p50_ms"], b["ttft_p50_ms"])
    r95 = ratio(a["ttft_p95_ms"], b["ttft_p95_ms"])
    r_ans = ratio(a["ttft_answerable_p50_ms"], b["ttft_answerable_p50_ms"])
    return {
        "prompt_tokens_ratio": ratio(a["prompt_tokens_mean"], b["prompt_tokens_mean"]),
        "evaluated_tokens_ratio": ratio(a["processed_tokens_mean"], b["processed_tokens_mean"]),
        "ttft_ratio_p50": r50,
        "ttft_ratio_p95": r95,
        "ttft_ratio_answerable_p50": r_ans,
        "ttft_ratio_target": TTFT_RATIO_TARGET,
        "ttft_ratio_met": r50 is not None and r50 <= TTFT_RATIO_TARGET + 1e-9,
        "warm_ttft_target_ms": WARM_TTFT_TARGET_MS,
        "warm_ttft_p50_met": a["ttft_p50_ms"] is not None
        and a["ttft_p50_ms"] < WARM_TTFT_TARGET_MS,
        "warm_ttft_p95_met": a["ttft_p95_ms"] is not None
        and a["ttft_p95_ms"] < WARM_TTFT_TARGET_MS,
        "correctness_met": (a["must_contain_correct"] >= b["must_contain_correct"]
                            and a["refusal_correct"] >= b["refusal_correct"]),
    }


def _s(ms: float | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.2f}"


def _n(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _acc(share: float | None, correct: int, n: int) -> str:
    return "–" if share is None else f"{share:.2f} ({correct}/{n})"


def table(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The side-by-side Markdown table."""
    rows = [
        ("TTFT p50 / p95 (s)", f"{_s(a['ttft_p50_ms'])} / {_s(a['ttft_p95_ms'])}",
         f"{_s(b['ttft_p50_ms'])} / {_s(b['ttft_p95_ms'])}"),
        ("TTFT p50 / p95, answerable only (s)",
         f"{_s(a['ttft_answerable_p50_ms'])} / {_s(a['ttft_answerable_p95_ms'])}",
         f"{_s(b['ttft_answerable_p50_ms'])} / {_s(b['ttft_answerable_p95_ms'])}"),
        ("total p50 / p95 (s)", f"{_s(a['total_p50_ms'])} / {_s(a['total_p95_ms'])}",
         f"{_s(b['total_p50_ms'])} / {_s(b['total_p95_ms'])}"),
        ("prompt tokens mean / p50 (answer call)",
         f"{_n(a['prompt_tokens_mean'])} / {_n(a['prompt_tokens_p50'])}",
         f"{_n(b['prompt_tokens_mean'])} / {_n(b['prompt_tokens_p50'])}"),
        ("prompt tokens mean, all calls (incl. rewrite / condense)",
         _n(a["prompt_tokens_all_mean"]), _n(b["prompt_tokens_all_mean"])),
        ("prompt tokens reused from llama.cpp's cache / evaluated, mean",
         f"{_n(a['cached_tokens_mean'])} / {_n(a['processed_tokens_mean'])}",
         f"{_n(b['cached_tokens_mean'])} / {_n(b['processed_tokens_mean'])}"),
        ("prompt processing speed, llama.cpp (tokens/s)",
         _n(a["prompt_tokens_per_s"], 1), _n(b["prompt_tokens_per_s"], 1)),
        ("questions that reached the model", f"{a['model_called']}/{a['items']}",
         f"{b['model_called']}/{b['items']}"),
        ("must-contain accuracy (answerable)",
         _acc(a["must_contain_accuracy"], a["must_contain_correct"], a["answerable"]),
         _acc(b["must_contain_accuracy"], b["must_contain_correct"], b["answerable"])),
        ("refusal accuracy (unanswerable / adversarial)",
         _acc(a["refusal_accuracy"], a["refusal_correct"], a["refuse"]),
         _acc(b["refusal_accuracy"], b["refusal_correct"], b["refuse"])),
        ("all items correct", f"{a.get('correct', 0)}/{a['items']}",
         f"{b.get('correct', 0)}/{b['items']}"),
        ("errors", str(a["errors"]), str(b["errors"])),
    ]
    lines = [f"| | {NAMES['a']} | {NAMES['b']} |", "| --- | --- | --- |"]
    lines += [f"| {k} | {x} | {y} |" for k, x, y in rows]
    return "\n".join(lines)


def verdict(c: dict[str, Any], a: dict[str, Any]) -> list[str]:
    def ok(flag: bool) -> str:
        return "met" if flag else "NOT met"

    r = c["ttft_ratio_p50"]
    return [
        f"TTFT(a)/TTFT(b) at p50: {_n(r, 2)} (p95: {_n(c['ttft_ratio_p95'], 2)}; answerable "
        f"only p50: {_n(c['ttft_ratio_answerable_p50'], 2)}); target <= 0.33: "
        f"{ok(c['ttft_ratio_met'])}",
        f"warm TTFT of (a): p50 {_s(a['ttft_p50_ms'])} s, p95 {_s(a['ttft_p95_ms'])} s; "
        f"target < 5 s: p50 {ok(c['warm_ttft_p50_met'])}, p95 {ok(c['warm_ttft_p95_met'])}",
        f"prompt size (a)/(b), mean tokens: {_n(c.get('prompt_tokens_ratio'), 2)} (whole "
        f"prompts), {_n(c.get('evaluated_tokens_ratio'), 2)} (evaluated, after llama.cpp's "
        f"prefix cache)",
        f"correctness of (a) >= (b) on both must-contain and refusals: "
        f"{ok(c['correctness_met'])}",
    ]


def item_table(measures: Sequence[Measure]) -> str:
    by: dict[str, dict[str, Measure]] = {}
    for m in measures:
        by.setdefault(m.id, {})[m.pipeline] = m
    lines = ["| id | category | (a) TTFT / total s | (a) prompt tok | (a) ok | "
             "(b) TTFT / total s | (b) prompt tok | (b) ok |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for item_id, pair in by.items():
        cells = [item_id, next(iter(pair.values())).category]
        for p in PIPELINES:
            got = pair.get(p)
            if got is None:
                cells += ["–", "–", "–"]
                continue
            cells += [f"{_s(got.ttft_ms)} / {_s(got.total_ms)}",
                      str(got.prompt_tokens) if got.model_called else "0 (no model)",
                      "yes" if got.correct else f"no: {got.why or got.error}"[:60]]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def render(summary: dict[str, dict[str, Any]], comparison: dict[str, Any],
           measures: Sequence[Measure], meta: dict[str, Any]) -> str:
    out = ["# Chat benchmark: this pipeline vs. llama-index CondensePlusContextChatEngine", ""]
    out += [f"- {k}: {v}" for k, v in meta.items()]
    out += ["", table(summary["a"], summary["b"]), ""]
    out += [f"- {line}" for line in verdict(comparison, summary["a"])]
    out += ["", "## How it was measured", "", METHOD, "", "## Every item", "",
            item_table(measures), ""]
    return "\n".join(out)


METHOD = """\
- Both pipelines use one in-process `LocalLlama` (llama.cpp, 1 slot, n_ctx 2048, 2 threads),
  loaded once, and one Chroma collection (the corpus ingested by this run). (b) retrieves
  `similarity_top_k = top_k` chunks; (a) retrieves `top_k` passages (dense + BM25) and shows
  the model at most `llm_context_passages` short verbatim spans within `llm_evidence_chars`.
  Both generate greedily (temperature 0) with at most `llm_max_tokens` new tokens.
- TTFT: from the call (`Assistant.stream` / `CondensePlusContextChatEngine.stream_chat`) to
  the first non-empty text piece; it includes follow-up rewriting / condensing and retrieval.
  Total: to the end of the stream (for (a), its `Final` event with checked citations).
- Prompt tokens: llama.cpp's count for the answer-generating call ((a): `Answer.usage`;
  (b): the model's `last_usage`), and summed over all calls of the question. "Reused from
  cache" is llama.cpp's `cache_n` for the answer call, "evaluated" its `prompt_n` (the tokens
  actually processed, which is what TTFT pays for).
- Prompt caching: the pipelines alternate per question and the one that goes first
  alternates too. The local model starts every request from a saved state of its system
  prompt (computed once per distinct system prompt, then restored), so only what follows
  the system prompt is evaluated. (a)'s system prompt is fixed (rules and examples), so it
  is read once for the whole run; (b)'s system message holds its retrieved chunks, so it is
  read anew for each question, in a call of its own before the answer call: the "evaluated"
  row counts only the answer call's tokens, and TTFT includes both. Compare the "prompt
  tokens" row (whole prompts) with the "evaluated" row.
- (a) refuses off-topic questions with its extractive gate without calling the model: those
  items have 0 prompt tokens and a TTFT of a few milliseconds. "answerable only" rows show
  TTFT without them.
- Correctness: `score_item` of the evaluation (must-contain for answerable items, refusal for
  unanswerable / adversarial ones). (b) counts as refusing when its answer contains the
  project's refusal phrase or says the context lacks the answer (`baseline.REFUSAL_PATTERNS`,
  `generative.is_refusal`, or "don't know", which llama-index's default prompt asks for).
- Follow-ups: each pipeline first answers the earlier turns itself (not measured).
- The machine is a 2-core CPU shared with other work: the load average is in the header;
  absolute times vary between runs, the ratio less so."""


# -- the run ----------------------------------------------------------------------------------
def beside_eval(path: Path) -> Path:
    """A settings path (corpus, data folder) as given, or the project's one beside eval/
    when the benchmark runs from another folder."""
    from .dataset import default_eval_dir

    root = default_eval_dir().parent
    return root / path if not path.exists() and (root / path).exists() else path


def bench_model(settings: Settings) -> Any:
    """The local model a benchmark run loads: `llm_model_path`, or the packaged model under
    the data folder."""
    from ..llm import LocalLlama, local_chat_model

    if settings.llm_model_path:
        return LocalLlama(Path(settings.llm_model_path), n_threads=settings.llm_threads,
                          max_queue=settings.llm_queue_size)
    return local_chat_model(beside_eval(settings.data_dir), n_threads=settings.llm_threads,
                            max_queue=settings.llm_queue_size)


def run(settings: Settings, *, questions: Path | None = None, out_dir: Path | None = None,
        data_dir: Path | None = None, limit: int | None = None, all_items: bool = False,
        model: Any = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark; write chat_bench.md and chat_bench.json; return the result dict."""
    from . import report
    from .dataset import default_eval_dir, load_items
    from .runner import IndexCache

    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    eval_dir = default_eval_dir()
    qset = questions or eval_dir / "questions.jsonl"
    out_dir = out_dir or eval_dir / "reports"
    items = load_items(qset)
    chosen = ([i for i in items if i.question.strip()] if all_items else select_items(items))
    if limit is not None:
        chosen = chosen[:limit]
    spare = [i for i in items if i.answerable and not i.history and i not in chosen]
    warm = spare[0] if spare else chosen[0]

    corpus = beside_eval(settings.corpus_dir)
    work = data_dir or Path(tempfile.mkdtemp(prefix="assistant-chat-bench-"))
    started = dt.datetime.now(dt.UTC)
    commit = report.git_commit(eval_dir.parent)  # the code that runs, not HEAD at the end
    load_before = os.getloadavg()
    try:
        say(f"indexing {corpus} into {work} ...")
        bench_dir = IndexCache(work, [corpus], settings).data_dir(settings.embedding_model)
        s = settings.with_overrides(data_dir=bench_dir, generator="local")
        if model is None:
            model = bench_model(settings)
        t0 = time.perf_counter()
        model.load()
        load_s = time.perf_counter() - t0
        shared = RecordingModel(model)
        say(f"model {model.name} loaded in {load_s:.1f} s; building both pipelines ...")
        pipes: dict[str, PipelineA | PipelineB] = {"a": PipelineA(s, shared),
                                                    "b": PipelineB(s, shared)}
        say(f"warm-up (not measured): {warm.id}")
        for p in PIPELINES:
            pipes[p].measure(warm)
        measures: list[Measure] = []
        for n, item in enumerate(chosen):
            order = PIPELINES if n % 2 == 0 else PIPELINES[::-1]
            for k, p in enumerate(order):
                m = pipes[p].measure(item)
                m.order = k
                measures.append(m)
                say(f"[{n + 1}/{len(chosen)}] {item.id} ({p}) ttft {_s(m.ttft_ms)} s, "
                    f"total {_s(m.total_ms)} s, prompt {m.prompt_tokens}, "
                    f"{'ok' if m.correct else 'WRONG'}")
    finally:
        if data_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    summary = {p: summarise([m for m in measures if m.pipeline == p]) for p in PIPELINES}
    comparison = compare(summary["a"], summary["b"])
    answerable = sum(i.expect != "refuse" for i in chosen)
    meta = {
        "command": "assistant bench-chat" + (" --all" if all_items else "")
        + (f" --limit {limit}" if limit is not None else ""),
        "generated": started.strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "questions": f"{len(chosen)} from {qset.name} ({answerable} answerable, "
                     f"{sum(bool(i.history) for i in chosen)} of them follow-ups; "
                     f"{len(chosen) - answerable} unanswerable / adversarial); warm-up "
                     f"{warm.id} not measured",
        "model": f"{model.name} (in-process llama.cpp via xllamacpp, loaded once in "
                 f"{load_s:.1f} s)",
        "settings": f"top_k {s.top_k}, llm_context_passages {s.llm_context_passages}, "
                    f"llm_evidence_chars {s.llm_evidence_chars}, llm_max_tokens "
                    f"{s.llm_max_tokens}, llm_threads {s.llm_threads}",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other work "
                   f"(load average {load_before[0]:.1f} at start, {load_after[0]:.1f} at end)",
    }
    result = {"meta": meta, "summary": summary, "comparison": comparison,
              "items": [m.to_json() for m in measures]}
    write(result, out_dir)
    return result


def write(result: dict[str, Any], out_dir: Path) -> None:
    """chat_bench.md and chat_bench.json in out_dir."""
    measures = [Measure(**row) for row in result["items"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "chat_bench.md").write_text(
        render(result["summary"], result["comparison"], measures, result["meta"]),
        encoding="utf-8")
    (out_dir / "chat_bench.json").write_text(json.dumps(result, indent=1, ensure_ascii=False)
                                             + "\n", encoding="utf-8")


def rerender(json_path: Path, out_dir: Path | None = None) -> dict[str, Any]:
    """Recompute the summary and rewrite the report from a saved chat_bench.json (no model
    run), e.g. after a change to the report's layout."""
    result = json.loads(json_path.read_text(encoding="utf-8"))
    measures = [Measure(**row) for row in result["items"]]
    for m in measures:
        m.why = _why(m.why)
    result["items"] = [m.to_json() for m in measures]
    result["summary"] = {p: summarise([m for m in measures if m.pipeline == p])
                         for p in PIPELINES}
    result["comparison"] = compare(result["summary"]["a"], result["summary"]["b"])
    write(result, out_dir or json_path.parent)
    return result


# -- CLI ----------------------------------------------------------------------------------------
def configure(p: argparse.ArgumentParser) -> None:
    p.description = (
        "The side-by-side benchmark: this pipeline vs. a plain llama-index "
        "CondensePlusContextChatEngine, same local model instance, same Chroma index, same "
        "top-k: time to first token, total time, prompt tokens, correctness. Writes "
        "eval/reports/chat_bench.md and .json.")
    p.add_argument("--set", dest="question_set", type=Path, default=None,
                   help="question set JSONL (default: eval/questions.jsonl)")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: eval/reports)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="keep the benchmark's index here (default: a temporary folder)")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N questions of the selection")
    p.add_argument("--all", dest="all_items", action="store_true",
                   help="every non-blank question of the set instead of the fixed subset of "
                        "20 answerable (3 follow-ups) + 6 unanswerable / adversarial")


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    result = run(settings, questions=args.question_set, out_dir=args.out,
                 data_dir=args.data_dir, limit=args.limit, all_items=args.all_items)
    summary, comparison = result["summary"], result["comparison"]
    print(table(summary["a"], summary["b"]))
    for line in verdict(comparison, summary["a"]):
        print(line)
    out = args.out or Path("eval/reports")
    print(f"report: {out / 'chat_bench.md'}, {out / 'chat_bench.json'}")
    return 0
