"""Validation of the citation-support check on the hand-labelled pairs (eval/support_pairs.jsonl).

The check under test is `assistant.citations.support_score` with `SUPPORT_THRESHOLD`
(lexical: share of stemmed content words of the sentence found in the passage, 0 when a
number of the sentence is missing). For comparison the validation also sweeps the threshold
and, when an embedder is given, scores an embedding-similarity check (cosine of sentence and
passage) alone and combined with the lexical one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..citations import SUPPORT_THRESHOLD, support_score, supports
from ..text import strip_markdown, words
from .dataset import SupportPair

Embed = Callable[[list[str]], np.ndarray]

THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(14))  # 0.30 .. 0.95

# The stricter check this evaluation proposes for citations.py (see eval/README.md): the same
# lexical score at a slightly higher threshold, plus two guards against the commonest false
# "supported": a negation on one side only, and a quantifier the passage does not state.
PROPOSED_THRESHOLD = 0.65
NEGATIONS = frozenset(["not", "no", "never", "none", "neither", "nor", "without", "cannot"])
QUANTIFIERS = frozenset(["all", "every", "each", "only", "always", "half", "third", "thirds",
                         "quarter", "twice", "double", "majority", "most", "few"])


def _words(text: str) -> set[str]:
    return {w.lower().replace("’", "'") for w in words(strip_markdown(text))}


def proposed_supports(sentence: str, passage: str,
                      threshold: float = PROPOSED_THRESHOLD) -> bool:
    """Lexical support at `threshold`, with negations agreeing on both sides and every
    quantifier of the sentence ("all", "only", "half") present in the passage."""
    if support_score(sentence, passage) < threshold:
        return False
    s, p = _words(sentence), _words(passage)
    s |= {"not" for w in s if w.endswith("n't")}
    p |= {"not" for w in p if w.endswith("n't")}
    if (s & NEGATIONS) - p or (p & NEGATIONS & {"not", "never", "no"}) - s:
        return False
    return not (s & QUANTIFIERS) - p


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else 0.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn,
                "accuracy": round(self.accuracy, 4), "precision": round(self.precision, 4),
                "recall": round(self.recall, 4), "f1": round(self.f1, 4)}


def confusion(labels: Sequence[bool], predicted: Sequence[bool]) -> Confusion:
    tp = sum(a and b for a, b in zip(labels, predicted, strict=True))
    fp = sum(b and not a for a, b in zip(labels, predicted, strict=True))
    fn = sum(a and not b for a, b in zip(labels, predicted, strict=True))
    return Confusion(tp=tp, fp=fp, tn=len(labels) - tp - fp - fn, fn=fn)


def _sweep(labels: list[bool], scores: list[float]) -> list[dict[str, Any]]:
    return [{"threshold": t, **confusion(labels, [s >= t for s in scores]).to_json()}
            for t in THRESHOLDS]


def validate(pairs: Sequence[SupportPair], embed: Embed | None = None) -> dict[str, Any]:
    labels = [p.supported for p in pairs]
    lexical = [support_score(p.sentence, p.passage) for p in pairs]
    chosen = confusion(labels, [s >= SUPPORT_THRESHOLD for s in lexical])
    out: dict[str, Any] = {
        "pairs": len(pairs),
        "supported": sum(labels),
        "threshold": SUPPORT_THRESHOLD,
        "lexical": chosen.to_json(),
        "lexical_sweep": _sweep(labels, lexical),
        "errors": [
            {"id": p.id, "label": p.supported, "score": round(s, 3), "sentence": p.sentence}
            for p, s in zip(pairs, lexical, strict=True)
            if (s >= SUPPORT_THRESHOLD) != p.supported
        ],
    }
    if embed is not None:
        vs = embed([p.sentence for p in pairs])
        vp = embed([p.passage for p in pairs])
        cosine = [float(np.dot(a, b)) for a, b in zip(vs, vp, strict=True)]
        out["embedding_sweep"] = _sweep(labels, cosine)
        # lexical (chosen threshold) AND cosine >= t
        out["combined_sweep"] = [
            {"threshold": t, **confusion(labels, [lx >= SUPPORT_THRESHOLD and c >= t
                                                  for lx, c in zip(lexical, cosine,
                                                                   strict=True)]).to_json()}
            for t in THRESHOLDS
        ]
    # The whole check citations.py applies (score, names, negations, quantifiers).
    in_use = [supports(p.sentence, p.passage) for p in pairs]
    out["in_use"] = {
        **confusion(labels, in_use).to_json(),
        "errors": [p.id for p, ok in zip(pairs, in_use, strict=True) if ok != p.supported],
    }
    out["proposed"] = {
        "threshold": PROPOSED_THRESHOLD,
        **confusion(labels, [proposed_supports(p.sentence, p.passage) for p in pairs]).to_json(),
        "errors": [p.id for p in pairs
                   if proposed_supports(p.sentence, p.passage) != p.supported],
    }
    out["best"] = _best(out)
    return out


def _best(out: dict[str, Any]) -> dict[str, Any]:
    """The variant with the highest accuracy (ties: higher precision, then the lexical one)."""
    candidates = []
    for kind in ("lexical_sweep", "embedding_sweep", "combined_sweep"):
        for row in out.get(kind, []):
            candidates.append((row["accuracy"], row["precision"],
                               kind == "lexical_sweep", kind, row))
    *_, kind, row = max(candidates, key=lambda c: c[:3])
    return {"check": kind.removesuffix("_sweep"), **row}
