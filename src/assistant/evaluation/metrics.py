"""Deterministic metrics (no model as judge). Pure functions over strings and numbers.

Definitions (also in eval/README.md):

- Normalisation (`normalise`): typographic quotes to ASCII, Markdown emphasis markers (`**`,
  `__`, `*`, backticks) removed, whitespace collapsed, lower case.
- A passage *contains* an evidence span when the normalised span is a substring of the
  normalised passage, or when the span is cut by a chunk boundary and the passage holds at
  least `CONTAIN_THRESHOLD` (half) of it: a prefix of the span at the passage's end or a
  suffix of the span at its start.
- Retrieval: the rank of an item is the rank of the first retrieved passage that contains any
  of its evidence spans; hit@k = rank <= k; reciprocal rank = 1/rank (0 when none).
  Evidence recall@k = share of the item's spans contained in the top k.
- Must-contain: every element (a string, or a list of alternatives of which one suffices)
  occurs in the normalised answer.
- Token F1: SQuAD-style (lower case, punctuation and articles removed, citation markers
  stripped) between the answer and the reference.
- Citations, after ALCE (Gao et al., 2023), with a deterministic support check instead of NLI:
  a sentence is supported when the union of its cited passages supports it (recall); a
  citation is precise unless the sentence is unsupported, or the citation alone does not
  support it while the other citations of the sentence do (precision).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..citations import markers, strip_markers, supports
from ..text import sentence_spans

CONTAIN_THRESHOLD = 0.5

Support = Callable[[str, str], bool]

_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-",
                         "\u00a0": " "})
_EMPHASIS = re.compile(r"\*\*|__|`|(?<![\w*])\*(?=\S)|(?<=\S)\*(?![\w*])")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    text = text.translate(_QUOTES)
    text = _EMPHASIS.sub("", text)
    return _SPACE.sub(" ", text).strip().lower()


# -- retrieval --------------------------------------------------------------------------------
def span_coverage(span: str, passage: str) -> float:
    """Share of the (normalised) span that the passage holds: 1.0 when it contains it whole,
    the longest boundary overlap (span cut by a chunk boundary) otherwise."""
    s, p = normalise(span), normalise(passage)
    if not s or not p:
        return 0.0
    if s in p:
        return 1.0
    best = 0
    tail = p[-len(s):]  # a prefix of the span may end the passage
    for i in range(len(tail)):
        if s.startswith(tail[i:]):
            best = len(tail) - i
            break
    head = p[: len(s)]  # a suffix of the span may start the passage
    for i in range(len(head), 0, -1):
        if i <= best:
            break
        if s.endswith(head[:i]):
            best = i
            break
    return best / len(s)


def contains(span: str, passage: str, threshold: float = CONTAIN_THRESHOLD) -> bool:
    return span_coverage(span, passage) >= threshold


def evidence_ranks(evidence: Sequence[str], passages: Sequence[str]) -> list[int | None]:
    """For each span, the 1-based rank of the first passage containing it (None: not found)."""
    ranks: list[int | None] = []
    for span in evidence:
        rank = None
        for r, text in enumerate(passages, 1):
            if contains(span, text):
                rank = r
                break
        ranks.append(rank)
    return ranks


def first_relevant(ranks: Sequence[int | None]) -> int | None:
    found = [r for r in ranks if r is not None]
    return min(found) if found else None


def hit_at(rank: int | None, k: int) -> bool:
    return rank is not None and rank <= k


def reciprocal_rank(rank: int | None) -> float:
    return 1.0 / rank if rank else 0.0


def evidence_recall_at(ranks: Sequence[int | None], k: int) -> float:
    if not ranks:
        return 0.0
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


# -- correctness ------------------------------------------------------------------------------
def must_contain_hits(answer: str, must: Sequence[str | Sequence[str]]) -> list[bool]:
    text = normalise(answer)
    hits = []
    for element in must:
        options = [element] if isinstance(element, str) else list(element)
        hits.append(any(normalise(o) in text for o in options))
    return hits


def quote_matches_evidence(quote: str, evidence: Sequence[str], min_chars: int = 20) -> bool:
    """A citation is correct when its quote overlaps a gold evidence span: the quote holds
    the span (or, where a chunk boundary cuts it, at least half of it), or the quote is
    a piece of the span at least `min_chars` long. Independent of the runtime's checks."""
    q = normalise(quote)
    return any(contains(span, quote) or (len(q) >= min_chars and q in normalise(span))
               for span in evidence)


def must_contain_ok(answer: str, must: Sequence[str | Sequence[str]]) -> bool:
    return all(must_contain_hits(answer, must))


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation + "’‘“”–—"})


def _f1_tokens(text: str) -> list[str]:
    text = strip_markers(text).translate(_QUOTES).lower().translate(_PUNCT)
    return _ARTICLES.sub(" ", text).split()


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = _f1_tokens(prediction), _f1_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common: dict[str, int] = {}
    ref_counts: dict[str, int] = {}
    for t in ref:
        ref_counts[t] = ref_counts.get(t, 0) + 1
    for t in pred:
        if ref_counts.get(t, 0) > common.get(t, 0):
            common[t] = common.get(t, 0) + 1
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


# -- citations (ALCE-style) -------------------------------------------------------------------
@dataclass
class SentenceCheck:
    text: str  # the sentence without its markers
    cited: list[int]  # citation numbers, in order, unique
    supported: bool  # the union of the cited passages supports it
    precise: list[bool] = field(default_factory=list)  # per citation in `cited`


_TRAILING = re.compile(r"([.!?])((?:[ \t]*\[\d+(?:\s*[,;]\s*\d+)*\])+)")


def answer_sentences(answer: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, its citation numbers). Markers that open a sentence
    ("... end. [2] Next") belong to the sentence before them."""
    # "claim. [1] Next" -> "claim [1]. Next": markers after the full stop move before it
    answer = _TRAILING.sub(r"\2\1", answer)
    out: list[tuple[str, list[int]]] = []
    for a, b in sentence_spans(answer):
        raw = answer[a:b]
        lead = re.match(r"^(\s*\[\d+(?:\s*[,;]\s*\d+)*\])+", raw)
        if lead and out:
            out[-1][1].extend(markers(lead.group(0)))
            raw = raw[lead.end():]
        bare = strip_markers(raw).strip()
        refs = markers(raw)
        if not re.search(r"\w", bare):
            if out and refs:
                out[-1][1].extend(refs)
            continue
        out.append((bare, refs))
    return [(s, list(dict.fromkeys(refs))) for s, refs in out]


def check_citations(answer: str, passages: dict[int, str],
                    support: Support = supports) -> list[SentenceCheck]:
    """Check every sentence of `answer` against the passages its [n] markers point at.

    A marker pointing at no passage makes the sentence unsupported (as in ALCE).
    """
    checks: list[SentenceCheck] = []
    for sentence, cited in answer_sentences(answer):
        valid = bool(cited) and all(n in passages for n in cited)
        joint = valid and support(sentence, "\n".join(passages[n] for n in cited))
        precise: list[bool] = []
        for n in cited:
            if not joint:
                precise.append(False)
            elif len(cited) == 1 or support(sentence, passages[n]):
                precise.append(True)
            else:
                rest = [m for m in cited if m != n]
                precise.append(not support(sentence, "\n".join(passages[m] for m in rest)))
        checks.append(SentenceCheck(sentence, cited, joint, precise))
    return checks


def citation_recall(checks: Sequence[SentenceCheck]) -> float:
    return sum(c.supported for c in checks) / len(checks) if checks else 0.0


def citation_precision(checks: Sequence[SentenceCheck]) -> float:
    flags = [p for c in checks for p in c.precise]
    return sum(flags) / len(flags) if flags else 0.0


# -- refusals ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefusalScores:
    precision: float | None  # refused items that should be refused / refused (None: none)
    recall: float  # refused / items that should be refused
    wrongly_refused: float  # answerable items refused / answerable items
    refused: int
    expected: int
    answerable: int


def refusal_scores(rows: Iterable[tuple[bool, bool, bool]]) -> RefusalScores:
    """rows: (expects_refusal, refused, answerable) per item."""
    tp = fp = expected = answerable = wrong = 0
    for expects, refused, is_answerable in rows:
        expected += expects
        answerable += is_answerable
        if refused:
            tp += expects
            fp += not expects
            wrong += is_answerable
    return RefusalScores(
        precision=tp / (tp + fp) if tp + fp else None,
        recall=tp / expected if expected else 1.0,
        wrongly_refused=wrong / answerable if answerable else 0.0,
        refused=tp + fp, expected=expected, answerable=answerable,
    )


# -- speed ------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100] (numpy's default method)."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(values: Iterable[float]) -> float:
    xs = list(values)
    return sum(xs) / len(xs) if xs else math.nan
