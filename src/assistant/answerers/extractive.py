"""The extractive answerer: no language model, answers made of sentences quoted from passages.

Every sentence (or list item) of the retrieved passages is a candidate. Its score mixes
  - coverage: the idf-weighted share of the question's content words found in the sentence,
    its section headings, or (at half weight) the rest of its passage, and
  - meaning: the cosine similarity of the question and the sentence embeddings,
plus small nudges for the question's type ("how many X" wants "<number> X", "what is X"
wants "X is ..."). The best one or two candidates become the answer, each followed by the
[n] of its passage. Below a calibrated score, or when the question's type is not met (a
"who" question with no name in the sentence, a "when" question with no date), the answer
is the fixed refusal ("how many" wants a count: a date or an article number is not one).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..chunking import Sentence, sentences
from ..citations import citation_for
from ..conversation import asks_for_several
from ..store import sentence_id
from ..text import (
    STOPWORDS,
    definition_subject,
    items_after,
    last_heading,
    stem,
    strip_markdown,
    tokens,
)
from ..types import Answer, Citation, Passage
from . import REFUSAL

Weight = Callable[[str], float]
Embed = Callable[[list[str]], np.ndarray]
Lookup = Callable[[list[str]], dict[str, np.ndarray]]

# Calibrated on eval/questions.jsonl (answerable vs unanswerable/adversarial items).
MIN_SCORE = 0.40  # below this the best sentence does not answer the question
W_COVERAGE, W_MEANING, W_PASSAGE = 0.45, 0.45, 0.10
SECOND_RATIO = 0.85  # a second sentence must score at least this share of the first
ADJACENT_RATIO = 0.75  # ... or this much when it directly follows the first
TYPED_RATIO = 0.9  # ... a sentence of the asked-for type may score this much below the best
LIST_BONUS = 0.1
CONTEXT_WEIGHT = 0.3  # question words found elsewhere in the sentence's passage

# Bullets and "1." only, for the whole-list candidate: with lettered items ("a)", "(1)") it
# also made lists of legal texts' footnotes and gained nothing on the development sets. A
# sentence that introduces a list takes any marked items after it (`text.items_after`).
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+")
_NUMBER_WORDS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
                 "twenty|thirty|forty|fifty|hundred|thousand|million|billion|dozens?|"
                 "two-thirds|half")
_HAS_NUMBER = re.compile(rf"\b\d|\b(?:{_NUMBER_WORDS})\b", re.IGNORECASE)
_HAS_DATE = re.compile(r"\b(?:1[89]\d\d|20\d\d)\b|\b(?:January|February|March|April|May|June|"
                       r"July|August|September|October|November|December)\b")
MONTH = (r"(?:January|February|March|April|May|June|July|August|September|October|November|"
         r"December)")
# Figures that date or label something rather than count it: "12 November 2018", "in 2016",
# "Article 12", "Regulation (EU) 2019/881", "No 526/2013", "point (1)".
_NOT_A_COUNT = re.compile(
    rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{MONTH}(?:\s+\d{{4}})?|{MONTH}\s+\d{{1,4}}"
    r"(?:,?\s+\d{4})?|\b(?:1[89]\d\d|20\d\d)\b(?!\s*(?:%|per\s?cent|[a-z]))|"
    r"\b(?:Articles?|Art\.|Chapters?|Title|Annex(?:es)?|No\.?|Nos?|points?|paragraphs?|"
    r"Regulation|Directive|Decision|ETS|OJ\s+L)\s*(?:\(\w+\)\s*)?[\d/().,\s]+",
    re.IGNORECASE)
_MONEY = re.compile(r"[$€£]\s?\d|\b(?:euros?|dollars?|million|billion)\b", re.IGNORECASE)
_HOW_MANY = re.compile(r"\bhow many (\w+)", re.IGNORECASE)
_NEEDS_NUMBER = re.compile(r"\b(how (?:much|many|big|large|costly|expensive)|"
                           r"what (?:percentage|share|proportion)|number of|"
                           r"in (?:euros?|dollars?|EUR|USD)|"
                           r"what (?:is|was|are|were) [^?]{0,40}"
                           r"\b(?:budget|cost|price|amount)s?)\b",
                           re.IGNORECASE)
_NEEDS_DATE = re.compile(r"^\s*(?:when|in what year|what year|on what date)\b", re.IGNORECASE)
_NEEDS_NAME = re.compile(r"^\s*(?:who|which (?:country|countries|compan(?:y|ies)|states|"
                         r"persons?|people|individuals?|"
                         r"entities|entity|organi[sz]ations?))\b",
                         re.IGNORECASE)
_COPULA = re.compile(r"\s(?:–|—|-|is|are|was|means|refers to)\s")

# Words that frame a question rather than name its subject; they rarely occur in the answer.
_FRAMING = frozenset(tokens(
    "cover covers include includes mean means meant do does role purpose aim aims main key "
    "involve involves happen happened use used work works type types kind kinds example "
    "examples country countries measure measures number much many according"))


@dataclass
class Unit:
    passage: int  # index into the passages list
    start: int  # offsets in the passage text
    end: int
    text: str  # as a reader sees it (markdown stripped)
    coverage: float = 0.0
    meaning: float = 0.0
    score: float = 0.0


def _definition_subject(question: str) -> set[str]:
    return set(tokens(definition_subject(question)))


def names_something_new(text: str, question: str, *, first_word: bool = False) -> bool:
    """A capitalised word or acronym that the question does not use. The first word counts
    only with `first_word`, and then only when it is not a function word ("The", "It"): a
    model's answer often starts with the name ("Maersk was hit ..."), a quoted sentence
    rarely does. A month is no name ("This was done on 17 May 2019")."""
    q = {w.lower() for w in re.findall(r"\w+", question)}
    ws = re.findall(r"[\w'’-]+", text)
    if not first_word:
        ws = ws[1:]
    return any(w[:1].isupper() and w.lower() not in q and w.lower() not in {"eu", "the"}
               and w.lower() not in STOPWORDS and not re.fullmatch(MONTH, w) for w in ws)


def needs_name(question: str) -> bool:
    """"Who ...?", "Which company ...?": the answer must name someone."""
    return bool(_NEEDS_NAME.search(question))


class ExtractiveAnswerer:
    """Keeps a cache of sentence embeddings, so warm questions embed only the question."""

    def __init__(self, embed: Embed | None = None, cache_size: int = 50_000,
                 stored: Lookup | None = None) -> None:
        self.embed = embed
        self.stored = stored  # sentence vectors written at ingest, by sentence_id
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = cache_size

    def _meanings(self, units: list[Unit], passages: list[Passage],
                  query_vec: np.ndarray | None) -> None:
        if self.embed is None or query_vec is None:
            for u in units:
                u.meaning = passages[u.passage].similarity
            return
        keys = [sentence_id(passages[u.passage].id, u.start, u.end) for u in units]
        missing = [i for i, k in enumerate(keys) if k not in self.cache]
        if missing and self.stored is not None:
            found = self.stored([keys[i] for i in missing])
            for i in missing:
                if keys[i] in found:
                    self.cache[keys[i]] = found[keys[i]]
            missing = [i for i in missing if keys[i] not in self.cache]
        if missing:  # whole-list candidates, and passages from an index without sentences
            texts = [Sentence(units[i].start, units[i].end, units[i].text)
                     .embedding_text(passages[units[i].passage].section) for i in missing]
            for i, v in zip(missing, self.embed(texts), strict=True):
                self.cache[keys[i]] = v
        for u, k in zip(units, keys, strict=True):
            self.cache.move_to_end(k)
            u.meaning = float(np.dot(query_vec, self.cache[k]))
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def rank(self, question: str, passages: list[Passage], weight: Weight,
             query_vec: np.ndarray | None = None) -> list[Unit]:
        """Every sentence (and whole list) of the passages, best answer candidate first."""
        q_terms = set(tokens(question))
        if not passages or not q_terms:
            return []

        def w(t: str) -> float:
            return weight(t) * (0.25 if t in _FRAMING else 1.0)

        total = sum(w(t) for t in q_terms) or 1.0
        units: list[Unit] = []
        listing = asks_for_several(question)
        for i, p in enumerate(passages):
            # The section path says what a sentence is about; the document title is shared
            # by every sentence, so it tells them apart no better than nothing.
            head = set(tokens(p.section))
            context = set(tokens(strip_markdown(p.text)))
            candidates = sentences(p.text)
            items = [s for s in candidates if _LIST_ITEM.match(p.text[s.start:s.end])]
            if listing and len(items) >= 2:
                # The whole list as one candidate: "What stability measures...?"
                a, b = items[0].start, items[-1].end
                candidates.append(Sentence(a, b, strip_markdown(p.text[a:b]).strip()))
            for s in candidates:
                own = set(tokens(s.text)) | head
                got = sum(w(t) for t in q_terms & own)
                got += CONTEXT_WEIGHT * sum(w(t) for t in (q_terms & context) - own)
                units.append(Unit(i, s.start, s.end, s.text, coverage=got / total))
        if not units:
            return []
        self._meanings(units, passages, query_vec)
        for u in units:
            u.score = (W_COVERAGE * u.coverage + W_MEANING * u.meaning
                       + W_PASSAGE * passages[u.passage].similarity)
        _nudge(question, units)
        for u in units:
            if "\n" in u.text:  # a listing question wants the whole list
                heading = set(tokens(last_heading(passages[u.passage].section)))
                u.score += LIST_BONUS * (2 if heading & q_terms else 1)
        units.sort(key=lambda u: -u.score)
        return units

    def answer(self, question: str, passages: list[Passage], weight: Weight,
               query_vec: np.ndarray | None = None) -> Answer:
        """Compose a cited extractive answer, or refuse."""
        return self.compose(question, passages, self.rank(question, passages, weight,
                                                           query_vec))

    def compose(self, question: str, passages: list[Passage], units: list[Unit]) -> Answer:
        """The answer made of the best ranked units, or the refusal."""
        if not units:
            return refusal(passages)
        q_terms = set(tokens(question))
        # The best sentence that has what the question asks for (a figure for "how many",
        # a date for "when"), if it is nearly as good as the best sentence overall.
        after = _next_sentences(units)
        typed = [u for u in units if gives_what_is_asked(question, u.text, then=after[id(u)])]
        if not typed or typed[0].score < TYPED_RATIO * units[0].score:
            return refusal(passages)
        top = typed[0]
        if top.score < MIN_SCORE:
            return refusal(passages)
        units = [top] + [u for u in units if u is not top]

        p_top = passages[top.passage]
        # A sentence introducing a list ("... has three main areas of focus:") says there
        # is a list, not what is in it: the items after it join the answer.
        listed = items_after(p_top.text, top.end) if top.text.rstrip().endswith(":") else []
        if "\n" in top.text:  # the whole-list candidate won
            statements = [(_list_answer(p_top), top.passage)]
        elif len(listed) >= 2:
            statements = [(_listing(top.text.strip(), listed), top.passage)]
        else:
            chosen = [top]
            covered = q_terms & set(tokens(top.text))
            for u in units[1:6]:
                if len(chosen) == 2:
                    break
                follows = u.passage == top.passage and 0 <= u.start - top.end <= 2
                if u.score < (ADJACENT_RATIO if follows else SECOND_RATIO) * top.score:
                    continue
                new = (q_terms & set(tokens(u.text))) - covered
                if (new or follows) and "\n" not in u.text and u.text != top.text:
                    chosen.append(u)
                    covered |= new
            chosen.sort(key=lambda u: (u.passage != top.passage, u.passage, u.start))
            statements = [(_statement(u, passages[u.passage]), u.passage) for u in chosen]
        return replace(_compose(statements, passages), score=top.score)


def shared_words(weight: Weight, known: Callable[[str], bool],
                 function_words: frozenset[str]) -> Weight:
    """`weight` for the content words the documents use; 0 for any other word and for the
    given function words (a question in a language the documents are not written in)."""
    skip = {stem(w) for w in function_words}
    return lambda t: 0.0 if t in skip or not known(t) else weight(t)


def _nudge(question: str, units: list[Unit]) -> None:
    subject = _definition_subject(question)
    counted = _HOW_MANY.search(question)
    noun = stem(counted.group(1)) if counted else ""
    money = bool(re.search(r"\bhow much\b|\bcost|\bfinancial\b|\bdamages?\b|\bexpensive\b",
                           question, re.IGNORECASE))
    wants_number = bool(_NEEDS_NUMBER.search(question) or _NEEDS_DATE.search(question))
    for u in units:
        if subject:
            # "What is X?": prefer the sentence that names X and then says what it is.
            m = _COPULA.search(u.text[:120])
            if m and set(tokens(u.text[: m.start()])) >= subject \
                    and len(tokens(u.text[: m.start()])) <= len(subject) + 1:
                u.score += 0.1
        if noun:
            # "How many servers": "4,000 servers" is the answer.
            pattern = rf"(?:\d[\d,.]*|\b(?:{_NUMBER_WORDS}))\**\s+(?:\w+\s+)?(\w+)"
            if any(stem(x) == noun for x in re.findall(pattern, u.text, re.IGNORECASE)):
                u.score += 0.15
        if wants_number and not _HAS_NUMBER.search(u.text):
            u.score -= 0.1
        if money and _MONEY.search(u.text):
            u.score += 0.1


def gives_what_is_asked(question: str, text: str, *, first_word: bool = False,
                        then: str = "") -> bool:
    """Does the text have the kind of thing the question asks for: a date for "when", a
    count for "how many", a figure for "how much" (not only a date or an article number),
    a name for "who"? `then`, the sentence after it, may give the date or figure ("In 2017,
    NotPetya hit Maersk." "It cost $300 million."), not the name: a name there is often
    someone else's. (`first_word` as in `names_something_new`.)"""
    if _NEEDS_DATE.search(question):
        return bool(_HAS_DATE.search(f"{text} {then}"))
    if _NEEDS_NUMBER.search(question):
        return bool(_HAS_NUMBER.search(_NOT_A_COUNT.sub(" ", f"{text} {then}")))
    if needs_name(question):
        return names_something_new(text, question, first_word=first_word)
    return True


def _next_sentences(units: list[Unit]) -> dict[int, str]:
    """The text of the sentence right after each unit, by id(unit)."""
    at = {(u.passage, u.start): u for u in units if "\n" not in u.text}
    out = {}
    for u in units:
        nxt = next((at[(u.passage, u.end + gap)] for gap in range(3)
                    if (u.passage, u.end + gap) in at), None)
        out[id(u)] = "" if nxt is None else nxt.text
    return out


def _statement(u: Unit, p: Passage) -> str:
    """A unit as an answer sentence; a bare list (project countries) gets its heading."""
    text = u.text
    if text and text[-1] not in ".!?:;" and len(text) < 300 and u.start == 0 \
            and u.end >= len(p.text.rstrip()) and last_heading(p.section):
        return f"{last_heading(p.section)}: {text}"
    return text


def _list_answer(p: Passage) -> str:
    """One sentence: the line introducing the list (or its heading), then the items."""
    lines = [ln for ln in p.text.splitlines() if ln.strip()]
    first = next(i for i, ln in enumerate(lines) if _LIST_ITEM.match(ln))
    intro = strip_markdown(lines[first - 1]).strip() if first else ""
    if not intro.endswith(":"):
        head = last_heading(p.section)
        intro = f"{head}:" if head else ""
    return _listing(intro, [ln for ln in lines[first:] if _LIST_ITEM.match(ln)])


def _listing(intro: str, lines: list[str]) -> str:
    """One sentence: `intro` (if any), then the list lines as items joined by semicolons."""
    items = [strip_markdown(ln).strip().rstrip(";.") for ln in lines]
    return (intro + " " if intro else "") + "; ".join(items) + "."


def _compose(statements: list[tuple[str, int]], passages: list[Passage]) -> Answer:
    numbering: dict[int, int] = {}
    parts: list[str] = []
    for text, pi in statements:
        n = numbering.setdefault(pi, len(numbering) + 1)
        body, end = (text[:-1], text[-1]) if text[-1] in ".!?;:" else (text, ".")
        parts.append(f"{body} [{n}]{'.' if end in ':;' else end}")
    citations = [citation_for(n, passages[pi]) for pi, n in numbering.items()]
    return Answer(answer=" ".join(parts), refused=False, citations=citations, mode="extractive")


def merge(parts: list[Answer]) -> Answer:
    """One answer from the answers to the parts of a multi-part question.

    Citations are renumbered across parts; a passage cited by two parts keeps one number.
    Refused parts are left out unless every part was refused.
    """
    answered = [a for a in parts if not a.refused]
    if not answered:
        return parts[0]
    citations: list[Citation] = []
    by_passage: dict[str, int] = {}
    texts: list[str] = []
    for a in answered:
        mapping: dict[int, int] = {}
        for c in a.citations:
            n = by_passage.setdefault(c.passage_id or c.text, len(by_passage) + 1)
            mapping[c.id] = n
            if n == len(citations) + 1:
                citations.append(replace(c, id=n))
        texts.append(_renumber(a.answer, mapping))
    return Answer(answer=" ".join(texts), refused=False, citations=citations, mode="extractive",
                  score=min(a.score for a in answered))


def _renumber(text: str, mapping: dict[int, int]) -> str:
    def sub(m: re.Match[str]) -> str:
        return f"[{mapping.get(int(m.group(1)), 0)}]"

    return re.sub(r"\[(\d+)\]", sub, text)


def refusal(passages: list[Passage]) -> Answer:
    """The fixed refusal, with the closest sections offered as suggestions."""
    seen: list[str] = []
    for p in passages:
        label = f"{p.section or p.title} ({p.document})"
        if label not in seen:
            seen.append(label)
    return Answer(answer=REFUSAL, refused=True, citations=[], mode="extractive",
                  suggestions=seen[:3])


def answer(question: str, passages: list[Passage], weight: Weight) -> Answer:
    """Stateless shortcut without sentence embeddings (passage similarity stands in)."""
    return ExtractiveAnswerer().answer(question, passages, weight)
