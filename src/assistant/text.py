"""Small text utilities shared by keyword search, the extractive answerer and the checks."""

from __future__ import annotations

import re

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if
    in into is it its itself just me more most my myself no nor not now of off on once only
    or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves tell please give list name describe explain according brochure
    document documents text say says said mention mentioned
    """.split()  # noqa: SIM905
)

_WORD = re.compile(r"[A-Za-z0-9À-ÿ]+(?:[-'’][A-Za-z0-9À-ÿ]+)*")


def stem(word: str) -> str:
    """A deliberately light stemmer: plural and common verb endings only."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "shes", "ches", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    elif len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("e") and not w.endswith(("ee", "ie")):
        w = w[:-1]  # "impose", "imposes" and "imposed" share "impos"
    return w


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def tokens(text: str) -> list[str]:
    """Stemmed content words, for keyword search and overlap scores."""
    out: list[str] = []
    for w in words(text):
        lw = w.lower()
        if lw in STOPWORDS or (len(lw) == 1 and not lw.isdigit()):
            continue
        out.append(stem(lw))
        if "-" in lw:  # "cyber-diplomat" also matches "cyber" and "diplomat"
            out.extend(stem(p) for p in lw.split("-") if p and p not in STOPWORDS)
    return out


_ABBREV = re.compile(r"\b(?:Art|Arts|No|Nos|Nr|e\.g|i\.e|cf|para|Mr|Ms|Dr|St|vs|etc)\.$",
                     re.IGNORECASE)
# A paragraph number ("3.", "(a)", "iv)") opens a sentence; it is not one.
_ENUMERATOR = re.compile(r"\(?(?:\d{1,3}|[a-z]|[ivx]{1,5})[.)]", re.IGNORECASE)
_LETTER = re.compile(r"[^\W\d_]")
_SENT = re.compile(r"(?<=[.!?])[\"'”’)]*\s+(?=[A-Z0-9“\"(])|\n+")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of sentences and list items in `text`, trimmed."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for m in _SENT.finditer(text):
        spans.append((cursor, m.start()))
        cursor = m.end()
    spans.append((cursor, len(text)))
    merged: list[tuple[int, int]] = []
    for a, b in spans:  # "Art. 222", "e.g. the" and "3. Each Party" are not sentence ends
        prev = text[merged[-1][0]:merged[-1][1]] if merged else ""
        # Nor is "Rev." in "NACE Rev. 2": a segment without a letter is not a sentence.
        wordless = not _LETTER.search(text[a:b])
        if merged and (_ABBREV.search(prev) or _ENUMERATOR.fullmatch(prev.strip())
                       or wordless) \
                and "\n" not in text[merged[-1][1]:a]:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    out: list[tuple[int, int]] = []
    for a, b in merged:
        seg = text[a:b]
        stripped = seg.strip()
        if not stripped:
            continue
        a += len(seg) - len(seg.lstrip())
        b = a + len(stripped)
        out.append((a, b))
    return out


def strip_markdown(text: str) -> str:
    """Text as a reader sees it: emphasis markers and list bullets removed."""
    text = re.sub(r"^\s*(?:[-*+]|\d+\.)\s+(?:>\s*)?", "", text, flags=re.MULTILINE)
    text = re.sub(r"^\s*>\s?", "", text, flags=re.MULTILINE)
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    return re.sub(r"(\*\*|__|\*|`)", "", text)


_DEFINE = re.compile(r"^\s*(?:what\s+(?:is|are)|define|what does .+ mean)\s+(?:an?\s+|the\s+)?"
                     r"(.+?)\s*\??\s*$", re.IGNORECASE)


def definition_subject(question: str) -> str:
    """X in "What is X?" / "Define X" when X is a short term (at most four words), else ""."""
    m = _DEFINE.match(question)
    return m.group(1).strip(" \"'“”‘’") if m and len(tokens(m.group(1))) <= 4 else ""


def defines(text: str, subject: str) -> bool:
    """Does `text` define `subject` ("**Cyber diplomacy** – a set of ...", "X is a ...")?"""
    pattern = (rf"(?:^|[\n.;:]\s*)(?:the\s+|an?\s+)?{re.escape(subject)}\s*"
               r"(?:–|—|-|:|\bis\b|\bare\b|\bmeans\b|\brefers to\b)")
    return re.search(pattern, strip_markdown(text), re.IGNORECASE) is not None


def last_heading(section: str) -> str:
    """The innermost heading of a heading path ("Digital risks › Port security")."""
    return section.split(" › ")[-1] if section else ""


# A list item starts with a bullet, "1." or "1)", a letter "a)" or "(a)" (legal texts), or a
# bracketed number "(1)".
LIST_ITEM = re.compile(r"^\s*(?:(?P<bullet>[-*+•])|(?P<number>\d+[.)])|"
                       r"(?P<letter>\(?[a-z]{1,4}\))|(?P<bracketed>\(\d+\)))\s+")


def list_marker(line: str) -> str:
    """The kind of list marker a line starts with ("" for none)."""
    m = LIST_ITEM.match(line)
    if m is None:
        return ""
    return next(kind for kind, group in m.groupdict().items() if group)


def items_after(text: str, pos: int) -> list[str]:
    """The list items that directly follow `pos` in `text` (a line introducing a list ends
    there): every line with a list marker, up to the first that is neither blank nor one."""
    items = []
    for line in text[pos:].split("\n")[1:]:
        if not line.strip():
            continue
        if not list_marker(line):
            break
        items.append(line)
    return items
