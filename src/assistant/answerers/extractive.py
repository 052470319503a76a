"""The extractive answerer: no language model, answers made of sentences quoted from passages.

Each candidate sentence (or list item) of the retrieved passages is scored by how much of
the question it covers (idf-weighted content words, the section heading counting half) and
by the dense similarity of its passage. The best one or two become the answer, each
followed by the [n] of its passage. When nothing covers the question well enough, the
answer is the fixed refusal phrase.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..citations import citation_for
from ..text import sentence_spans, stem, strip_markdown, tokens
from ..types import Answer, Passage
from . import REFUSAL

Weight = Callable[[str], float]

# Thresholds, tuned on eval/questions.jsonl (see eval/README.md for the current figures).
MIN_SIMILARITY = 0.15  # below this dense similarity, a passage is off-topic
MIN_COVERAGE = 0.50  # share of the question's weighted content words an answer must cover
STRONG_SIMILARITY = 0.45  # a very close passage may cover fewer words (paraphrases)
MIN_COVERAGE_STRONG = 0.34
SECOND_RATIO = 0.75  # a second sentence must score at least this share of the first

_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+")
_QUANTITY = re.compile(r"\b(how (?:much|many|long|often)|what (?:year|date|percentage|share)|"
                       r"when|how large|number of)\b", re.IGNORECASE)
_LISTING = re.compile(r"\b(which|what are|list|name|examples?|countries|measures|sectors)\b",
                      re.IGNORECASE)


@dataclass
class Unit:
    passage: int  # index into the passages list
    start: int  # offsets in the passage text
    end: int
    text: str  # as a reader sees it (markdown stripped)
    score: float = 0.0
    coverage: float = 0.0


def _units(p: Passage, index: int) -> list[Unit]:
    return [Unit(index, a, b, strip_markdown(p.text[a:b]).strip()) for a, b in
            sentence_spans(p.text)]


# Words that frame a question rather than name its subject; they rarely occur in the answer.
_FRAMING = frozenset(tokens(
    "cover covers include includes mean means meant do does role purpose aim aims main key "
    "involve involves happen happened use used work works type types kind kinds example "
    "examples country countries measure measures number much many"))


def _coverage(q_terms: set[str], unit_terms: set[str], head_terms: set[str],
              weight: Weight) -> float:
    """Weighted share of the question's words found in the unit or its section headings."""

    def w(t: str) -> float:
        return weight(t) * (0.25 if t in _FRAMING else 1.0)

    total = sum(w(t) for t in q_terms)
    if total <= 0:
        return 0.0
    return sum(w(t) for t in q_terms & (unit_terms | head_terms)) / total


_DEFINE = re.compile(r"^\s*(?:what\s+(?:is|are)|define|what does .+ mean)\s+(?:an?\s+|the\s+)?"
                     r"(.+?)\s*\??\s*$", re.IGNORECASE)


_COPULA = re.compile(r"\s(?:–|—|-|is|are|was|means|refers to)\s")
_HOW_MANY = re.compile(r"\bhow many (\w+)", re.IGNORECASE)


def _definition_subject(question: str) -> set[str]:
    m = _DEFINE.match(question)
    return set(tokens(m.group(1))) if m and len(tokens(m.group(1))) <= 4 else set()


def _is_list_passage(p: Passage) -> bool:
    lines = [ln for ln in p.text.splitlines() if ln.strip()]
    return len(lines) >= 2 and sum(bool(_LIST_ITEM.match(ln)) for ln in lines) >= 2


def _last_heading(section: str) -> str:
    return section.split(" › ")[-1] if section else ""


def _statement(u: Unit, p: Passage) -> str:
    """A unit as an answer sentence; a bare list (project countries) gets its heading."""
    text = u.text
    if text and text[-1] not in ".!?:;" and len(text) < 300 and u.start == 0 \
            and u.end >= len(p.text.rstrip()) and _last_heading(p.section):
        return f"{_last_heading(p.section)}: {text}"
    return text


def _list_answer(p: Passage) -> str:
    items = [strip_markdown(ln).strip() for ln in p.text.splitlines() if _LIST_ITEM.match(ln)]
    head = _last_heading(p.section)
    intro = [strip_markdown(ln).strip() for ln in p.text.splitlines()
             if ln.strip() and not _LIST_ITEM.match(ln)]
    lead = intro[0] if intro else (f"{head}:" if head else "")
    return (lead + " " if lead else "") + "; ".join(i.rstrip(";.") for i in items) + "."


def answer(question: str, passages: list[Passage], weight: Weight) -> Answer:
    """Compose a cited extractive answer, or refuse."""
    q_terms = set(tokens(question))
    if not passages or not q_terms:
        return refusal(passages)
    best_sim = max(p.similarity for p in passages)
    units: list[Unit] = []
    for i, p in enumerate(passages):
        head = set(tokens(f"{p.title} {p.section}"))
        for u in _units(p, i):
            u.coverage = _coverage(q_terms, set(tokens(u.text)), head, weight)
            rank_bonus = 0.02 * (len(passages) - i)
            u.score = 0.6 * u.coverage + 0.4 * p.similarity + rank_bonus
            units.append(u)
    subject = _definition_subject(question)
    if subject:
        # "What is X?": prefer the sentence that names X and then says what it is.
        for u in units:
            m = _COPULA.search(u.text[:120])
            if m and set(tokens(u.text[: m.start()])) >= subject \
                    and len(tokens(u.text[: m.start()])) <= len(subject) + 1:
                u.score += 0.15
    counted = _HOW_MANY.search(question)
    if counted:
        # "How many servers": "4,000 servers" is the answer.
        noun = stem(counted.group(1))
        for u in units:
            if any(stem(w) == noun for w in re.findall(r"\d[\d,.]*\**\s+(?:\w+\s+)?(\w+)",
                                                       u.text)):
                u.score += 0.3
    if _QUANTITY.search(question):
        # "How much / when" wants a figure: prefer sentences that state one.
        for u in units:
            if not re.search(r"\d", u.text):
                u.score -= 0.15
    units.sort(key=lambda u: -u.score)
    top = units[0]
    needed = MIN_COVERAGE_STRONG if passages[top.passage].similarity >= STRONG_SIMILARITY \
        else MIN_COVERAGE
    if best_sim < MIN_SIMILARITY or top.coverage < needed:
        return refusal(passages)

    chosen = [top]
    p_top = passages[top.passage]
    if _LISTING.search(question) and _is_list_passage(p_top):
        statements = [(_list_answer(p_top), top.passage)]
    else:
        covered = q_terms & set(tokens(top.text))
        for u in units[1:6]:
            if len(chosen) == 2 or u.score < SECOND_RATIO * top.score:
                break
            new = (q_terms & set(tokens(u.text))) - covered
            if new or u.passage == top.passage and abs(u.start - top.end) < 3:
                chosen.append(u)
                covered |= new
        chosen.sort(key=lambda u: (u.passage != top.passage, u.passage, u.start))
        statements = [(_statement(u, passages[u.passage]), u.passage) for u in chosen]

    numbering: dict[int, int] = {}
    parts: list[str] = []
    for text, pi in statements:
        n = numbering.setdefault(pi, len(numbering) + 1)
        body, end = (text[:-1], text[-1]) if text[-1] in ".!?;:" else (text, ".")
        parts.append(f"{body} [{n}]{end if end != ':' else '.'}")
    citations = [citation_for(n, passages[pi]) for pi, n in numbering.items()]
    return Answer(answer=" ".join(parts), refused=False, citations=citations, mode="extractive")


def refusal(passages: list[Passage]) -> Answer:
    """The fixed refusal, with the closest sections offered as suggestions."""
    seen: list[str] = []
    for p in passages:
        label = f"{p.section or p.title} ({p.document})"
        if label not in seen:
            seen.append(label)
    return Answer(answer=REFUSAL, refused=True, citations=[], mode="extractive",
                  suggestions=seen[:3])
