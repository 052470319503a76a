"""One item's result, and the summary of a configuration's results (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..citations import evidence_text
from ..types import Answer
from . import metrics
from .dataset import Item

K_VALUES = (1, 3, 5, 10)

# Targets for the default configuration on the blind test set. (metric key, comparison, value)
TARGETS: dict[str, tuple[str, float]] = {
    "must_contain_accuracy": (">=", 0.80),
    "refusal_recall": (">=", 0.90),
    "wrongly_refused": ("<=", 0.08),
    "citation_correctness": (">=", 0.90),
    "hit@5": (">=", 0.95),
    "followup_accuracy": (">=", 0.90),
}


def meets(value: float | None, target: tuple[str, float]) -> bool:
    if value is None or value != value:  # None or NaN
        return False
    op, bound = target
    return value >= bound - 1e-9 if op == ">=" else value <= bound + 1e-9


@dataclass
class ItemResult:
    id: str
    category: str
    question: str
    history: list[str]
    expect: str
    answerable: bool
    answer: str = ""
    refused: bool = False
    error: str = ""  # InputError message (counts as a refusal) or an unexpected failure
    crashed: bool = False  # an exception other than InputError
    mode: str = ""
    rewritten_question: str = ""
    notes: list[str] = field(default_factory=list)  # the answer's notes (why it fell back...)
    prompt_tokens: int = 0  # of the model call that wrote the answer (0: no model)
    citations: list[dict[str, Any]] = field(default_factory=list)
    retrieved: list[dict[str, Any]] = field(default_factory=list)  # top passages, ranked
    evidence_ranks: list[int | None] = field(default_factory=list)
    rank: int | None = None
    must_contain_hits: list[bool] = field(default_factory=list)
    correct: bool = False
    f1: float | None = None
    sentences: list[dict[str, Any]] = field(default_factory=list)
    citation_recall: float | None = None
    citation_precision: float | None = None
    citation_precision_proposed: float | None = None  # under the proposed stricter check
    # Independent of the runtime's support check: share of the citations whose quote
    # overlaps one of the item's gold evidence spans (answerable items with evidence).
    citation_correctness: float | None = None
    grounding: str = ""  # the answer's grounding label
    self_check_skipped: bool = False  # the model chose its evidence without a doubt
    ttft_ms: float | None = None
    total_ms: float | None = None
    why: str = ""  # for a failed item: what went wrong

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def cited_evidence(answer: Answer | None) -> dict[int, str]:
    """Each citation's evidence as the answer's own check saw it (heading and quote)."""
    if answer is None:
        return {}
    return {c.id: evidence_text(c.section, c.text, c.title) for c in answer.citations}


def score_item(
    item: Item,
    *,
    answer: str,
    refused: bool,
    citations: dict[int, str],
    retrieved: Sequence[str],
    support: metrics.Support | None = None,
    error: str = "",
    crashed: bool = False,
    quotes: Sequence[str] = (),
) -> ItemResult:
    """Score one answer. `citations`: citation number -> cited passage text; `retrieved`:
    texts of the retrieved passages, best first (for hit@k / MRR)."""
    r = ItemResult(id=item.id, category=item.category, question=item.question,
                   history=list(item.history), expect=item.expect, answerable=item.answerable,
                   answer=answer, refused=refused or bool(error and not crashed), error=error,
                   crashed=crashed)
    if item.evidence:
        r.evidence_ranks = metrics.evidence_ranks(item.evidence, retrieved)
        r.rank = metrics.first_relevant(r.evidence_ranks)
    text = "" if r.refused else answer
    if item.must_contain:
        r.must_contain_hits = metrics.must_contain_hits(text, item.must_contain)
    if item.reference:
        r.f1 = metrics.token_f1(text, item.reference)
    if not r.refused and answer.strip():
        checks = (metrics.check_citations(answer, citations, support) if support
                  else metrics.check_citations(answer, citations))
        r.sentences = [asdict(c) for c in checks]
        r.citation_recall = metrics.citation_recall(checks)
        r.citation_precision = metrics.citation_precision(checks)
        from .support_check import proposed_supports

        strict = metrics.check_citations(answer, citations, proposed_supports)
        for row, c in zip(r.sentences, strict, strict=True):
            row["supported_proposed"] = c.supported
        r.citation_precision_proposed = metrics.citation_precision(strict)
    if not r.refused and quotes and item.evidence and not item.expects_refusal:
        r.citation_correctness = metrics.mean(
            metrics.quote_matches_evidence(q, item.evidence) for q in quotes)
    if item.expects_refusal:
        r.correct = r.refused
        if not r.correct:
            r.why = "answered instead of refusing"
    else:
        r.correct = not r.refused and all(r.must_contain_hits)
        if r.crashed:
            r.why = f"crashed: {error}"
        elif r.refused:
            r.why = "refused an answerable question" + (f" ({error})" if error else "")
        elif not r.correct:
            missing = [_show(m) for m, ok in zip(item.must_contain, r.must_contain_hits,
                                                 strict=True) if not ok]
            r.why = "missing " + ", ".join(missing)
    if r.sentences and not r.why:
        bad = [s for s in r.sentences if not s["supported"]]
        if bad:
            r.why = f"{len(bad)} unsupported sentence(s)"
        elif r.citation_precision is not None and r.citation_precision < 1:
            r.why = "an irrelevant citation"
    if item.evidence and not metrics.hit_at(r.rank, 5):
        r.why = (r.why + "; " if r.why else "") + (
            f"evidence at rank {r.rank}" if r.rank else "evidence not retrieved in top 10")
    return r


def _show(element: str | list[str]) -> str:
    return repr(element) if isinstance(element, str) else " | ".join(map(repr, element))


def summarise(results: Sequence[ItemResult]) -> dict[str, Any]:
    """The metrics of one configuration over one question set."""
    answerable = [r for r in results if r.answerable and r.expect != "refuse"]
    must = [r for r in answerable if r.must_contain_hits]
    with_evidence = [r for r in results if r.evidence_ranks]
    followups = [r for r in answerable if r.history]
    answered = [r for r in results if r.citation_recall is not None]
    sentences = [s for r in answered for s in r.sentences]
    refusals = metrics.refusal_scores(
        (r.expect == "refuse", r.refused, r.answerable and r.expect != "refuse")
        for r in results)
    timed = [r for r in results if r.ttft_ms is not None and not r.error]
    judged = [r for r in results if r.citation_correctness is not None]
    out: dict[str, Any] = {
        "items": len(results),
        "answerable": len(answerable),
        "must_contain_accuracy": metrics.mean(r.correct for r in must) if must else None,
        "token_f1": metrics.mean(r.f1 or 0.0 for r in answerable) if answerable else None,
        "followup_accuracy": metrics.mean(r.correct for r in followups) if followups else None,
        "followups": len(followups),
        "followups_correct": sum(r.correct for r in followups),
        "mrr": (metrics.mean(metrics.reciprocal_rank(r.rank) for r in with_evidence)
                if with_evidence else None),
        "citation_recall": (metrics.mean(r.citation_recall or 0.0 for r in answered)
                            if answered else None),
        "citation_precision": (metrics.mean(r.citation_precision or 0.0 for r in answered)
                               if answered else None),
        "supported_sentence_share": (metrics.mean(bool(s["supported"]) for s in sentences)
                                     if sentences else None),
        "citation_precision_proposed": (
            metrics.mean(r.citation_precision_proposed or 0.0 for r in answered)
            if answered else None),
        "supported_sentence_share_proposed": (
            metrics.mean(bool(s.get("supported_proposed")) for s in sentences)
            if sentences else None),
        "citation_correctness": (metrics.mean(r.citation_correctness or 0.0 for r in judged)
                                 if judged else None),
        "citation_judged_items": len(judged),
        "answer_sentences": len(sentences),
        "answered_items": len(answered),
        "refusal_precision": refusals.precision,
        "refusal_recall": refusals.recall,
        "wrongly_refused": refusals.wrongly_refused,
        "refused": refusals.refused,
        "expected_refusals": refusals.expected,
        "crashes": sum(r.crashed for r in results),
        "ttft_p50_ms": metrics.percentile([r.ttft_ms or 0.0 for r in timed], 50),
        "ttft_p95_ms": metrics.percentile([r.ttft_ms or 0.0 for r in timed], 95),
        "total_p50_ms": metrics.percentile([r.total_ms or 0.0 for r in timed], 50),
        "total_p95_ms": metrics.percentile([r.total_ms or 0.0 for r in timed], 95),
    }
    for k in K_VALUES:
        out[f"hit@{k}"] = (metrics.mean(metrics.hit_at(r.rank, k) for r in with_evidence)
                           if with_evidence else None)
    out["evidence_recall@5"] = (
        metrics.mean(metrics.evidence_recall_at(r.evidence_ranks, 5) for r in with_evidence)
        if with_evidence else None)
    by_category: dict[str, dict[str, Any]] = {}
    for r in results:
        c = by_category.setdefault(r.category, {"items": 0, "correct": 0})
        c["items"] += 1
        c["correct"] += int(r.correct)
    out["by_category"] = by_category
    by_grounding: dict[str, dict[str, int]] = {}
    for r in results:
        label = r.grounding or ("refused" if r.refused else "?")
        if r.self_check_skipped:  # kept apart: how right the answers that skip it are
            label += ", self-check skipped"
        g = by_grounding.setdefault(label, {"items": 0, "correct": 0})
        g["items"] += 1
        g["correct"] += int(r.correct)
    out["by_grounding"] = by_grounding
    out["targets"] = {key: meets(out.get(key), t) for key, t in TARGETS.items()}
    return out
