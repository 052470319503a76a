"""Where a citation is checked, mechanically.

Pure functions over text: the figures and names a sentence states (`numbers`; `figures`,
which also reads them in words; `names`), the lexical support check the evaluation's ALCE
metrics use (`supports`), and the numbered markers of an answer. answerers/generative.py
checks a model's answer against the sentences it chose with them.
"""

from __future__ import annotations

import re

from .text import STOPWORDS, last_heading, sentence_spans, stem, strip_markdown, tokens, words
from .types import Citation, Passage

_MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

# A sentence counts as supported by a passage when at least this share of its content words
# (stemmed) occurs in the passage, every number and name it states occurs there too (each
# figure beside a word it stands beside in the sentence), and a negation or quantifier
# ("not", "only", "all", "half") is not on one side only. Validated on the hand-labelled
# pairs in eval/support_pairs.jsonl (see eval/README.md).
SUPPORT_THRESHOLD = 0.65
_NEGATIONS = frozenset(["not", "no", "never", "none", "neither", "nor", "without", "cannot"])
_QUANTIFIERS = frozenset(["all", "every", "each", "only", "always", "half", "third", "thirds",
                          "quarter", "twice", "double", "majority", "most", "few"])
# Names that are written several ways in the same text ("EU" / "European Union").
_NAME_ALIASES = frozenset(["eu", "european", "union", "the", "member", "states"])


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen")
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SPELLED = re.compile(
    rf"\b(?:({'|'.join(_TENS)})(?:[-\s]({'|'.join(_UNITS[1:10])}))?|({'|'.join(_UNITS)}))"
    r"(?:\s+(hundred|thousand|million))?\b", re.IGNORECASE)
_SCALE = {"hundred": 100, "thousand": 1000, "million": 1_000_000}


def figures(text: str) -> set[str]:
    """The figures a text states, in digits or in words: legal texts write "sixty days" and
    "four years" where an answer writes 60 and 4 ("two million" holds 2 million, read as 2
    by `numbers`, and 2000000)."""
    out = numbers(text)
    for tens, unit, small, scale in _SPELLED.findall(text):
        if tens:
            value = 20 + 10 * _TENS.index(tens.lower())
            value += _UNITS.index(unit.lower()) if unit else 0
        else:
            value = _UNITS.index(small.lower())
        out |= {str(value), str(value * _SCALE.get(scale.lower(), 1))}
    return out


def names(text: str) -> set[str]:
    """Names and acronyms: capitalised words after the first of a sentence (which any word
    may be), and acronyms anywhere ("ENISA supports ...")."""
    out: set[str] = set()
    for a, b in sentence_spans(text):
        for i, w in enumerate(words(text[a:b])):
            w = re.sub(r"['’]s$", "", w)  # "the NIS Directive's sectors" names "Directive"
            if (w[:1].isupper() if i else w.isupper()) and len(w) >= 3 \
                    and w.lower() not in _NAME_ALIASES:
                out.add(w.lower())
    return out


def _plain_words(text: str) -> set[str]:
    ws = {w.lower().replace("’", "'") for w in words(text)}
    return ws | {"not" for w in ws if w.endswith("n't")}


def support_score(sentence: str, passage: str) -> float:
    """Share of the sentence's content words found in the passage; 0 if a number is missing."""
    s_tokens = set(tokens(strip_markdown(sentence)))
    if not s_tokens:
        return 1.0  # nothing to check (e.g. "Yes.")
    p_plain = strip_markdown(passage)
    if not numbers(sentence) <= numbers(p_plain):
        return 0.0
    p_tokens = set(tokens(p_plain))
    return len(s_tokens & p_tokens) / len(s_tokens)


# "X because Y": each side is a claim of its own. Checked as one sentence, a long true Y can
# carry a false X ("The EU imposed sanctions on Maersk because NotPetya cost it $300 million").
_CAUSAL = re.compile(r",?\s+\b(?:because(?: of)?|since|due to|as a result of|in order to)\s+",
                     re.IGNORECASE)


_TERM = re.compile(r"\d+(?:[.,]\d+)*|[A-Za-z\u00C0-\u00FF]+(?:[-'’][A-Za-z\u00C0-\u00FF]+)*")
NUMBER_WINDOW = 4  # words either side of a figure that say what it counts


def _terms(text: str) -> list[str]:
    """Numbers (without thousands separators) and stemmed content words, in order."""
    out = []
    for t in _TERM.findall(text):
        if t[0].isdigit():
            out.append(t.replace(",", ""))
        elif t.lower() not in STOPWORDS and len(t) > 1:
            out.append(stem(t))
    return out


def numbers_bound(sentence: str, passage: str) -> bool:
    """Does every figure of the sentence stand, in some line or sentence of the passage,
    beside at least one of the words it stands beside in the sentence?

    A passage that lists "15 states signed on or invited to accede" and "64 parties" holds
    both figures, but "64 states signed on" swaps them.
    """
    s_terms = _terms(sentence)
    segments = [set(_terms(passage[a:b])) for a, b in sentence_spans(passage)]
    for i, t in enumerate(s_terms):
        if not t[0].isdigit():
            continue
        near = {w for w in s_terms[max(0, i - NUMBER_WINDOW):i + NUMBER_WINDOW + 1]
                if not w[0].isdigit()}
        if near and not any(t in seg and near & seg for seg in segments):
            return False
    return True


def supports(sentence: str, passage: str, threshold: float = SUPPORT_THRESHOLD) -> bool:
    parts = [c for c in _CAUSAL.split(sentence) if c.strip()] or [sentence]
    if any(support_score(part, passage) < threshold for part in parts):
        return False
    s_plain, p_plain = strip_markdown(sentence), strip_markdown(passage)
    if not numbers_bound(s_plain, p_plain):
        return False
    p_lower = p_plain.lower()
    if any(n not in p_lower for n in names(s_plain)):
        return False  # "Yahoo! was hit by NotPetya": a name the passage does not have
    s, p = _plain_words(s_plain), _plain_words(p_plain)
    if (s & _NEGATIONS) - p or (_plain_words(_closest(s_plain, p_plain)) & _NEGATIONS
                                & {"not", "never", "no"}) - s:
        return False  # a "not" in another sentence of the passage says nothing about this one
    return not (s & _QUANTIFIERS) - p


def _closest(sentence: str, passage: str) -> str:
    """The line or sentence of the passage that shares the most content words with `sentence`."""
    own = set(tokens(sentence))
    segments = [passage[a:b] for a, b in sentence_spans(passage)] or [passage]
    return max(segments, key=lambda seg: len(own & set(tokens(seg))))


def markers(text: str) -> list[int]:
    """All citation numbers in order of appearance ("[1]", "[2, 3]")."""
    out: list[int] = []
    for m in _MARKER.finditer(text):
        out.extend(int(x) for x in re.split(r"\s*[,;]\s*", m.group(1)))
    return out


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text).strip()


def citation_for(n: int, p: Passage) -> Citation:
    return Citation(
        id=n, document=p.document, title=p.title, section=p.section, text=p.text,
        passage_id=p.id, start=p.start, end=p.end,
    )


def evidence_text(section: str, text: str, title: str = "") -> str:
    """What a source says: its document's title (an article of the "Convention on Cybercrime
    (Budapest Convention)" is about the Budapest Convention without naming it), its heading
    (shown to the model with it) and its text."""
    return "\n".join(x for x in (title, last_heading(section), text) if x)
