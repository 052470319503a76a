"""Structure-aware chunking: sections follow headings, chunks never cross a heading.

A chunk is a verbatim slice `text[start:end]` of its document, so a citation can quote it
and point at it. Short sections (a project heading with its list of countries) stay whole;
long ones are cut at paragraph, then sentence, boundaries.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .documents import SourceDocument
from .text import last_heading, sentence_spans, strip_markdown

SECTION_SEP = " › "
CHUNKER_VERSION = "4"  # 4: chunks carry the text before them (`Chunk.before`)
MAX_BEFORE = 2000  # longest stretch between chunks kept (headings and blank lines)

HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?;:])[\"'”’)]*\s+(?=[A-Z0-9“\"(•\-*])")


@dataclass(frozen=True)
class Chunk:
    id: str
    document: str
    title: str
    section: str
    text: str
    start: int
    end: int
    # The document's text between the previous chunk (or the start of the body) and this
    # one: headings and blank lines ("" when longer than MAX_BEFORE). With it, the chunks
    # rebuild any stretch of the document, headings included (sources.text_between).
    before: str = ""


def clean_heading(raw: str) -> str:
    """Heading text without Markdown emphasis."""
    return re.sub(r"[*_`]+", "", raw).strip()


def _paragraph_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of non-blank paragraphs in text[start:end], trimmed of surrounding whitespace."""
    spans: list[tuple[int, int]] = []
    for m in re.finditer(r"\S(?:.*?\S)?(?=\n[ \t]*\n|\s*\Z)", text[start:end], re.DOTALL):
        spans.append((start + m.start(), start + m.end()))
    return spans


def _sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cursor = start
    for m in _SENTENCE_END.finditer(text, start, end):
        spans.append((cursor, m.start()))
        cursor = m.end()
    spans.append((cursor, end))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _pack(spans: list[tuple[int, int]], limit: int, text: str = "") -> list[tuple[int, int]]:
    """Greedily merge consecutive spans while the merged slice stays within `limit` chars.

    A span that introduces a list ("... the following:") is not left at the end of a chunk
    when the span after it starts the next one: it moves to that chunk, so the list and
    its introduction are read, ranked and quoted together."""
    packed: list[tuple[int, int]] = []
    for i, (a, b) in enumerate(spans):
        if packed and b - packed[-1][0] <= limit:
            packed[-1] = (packed[-1][0], b)
            continue
        pa, pb = spans[i - 1] if i else (a, b)
        if (packed and packed[-1][0] < pa and text[pa:pb].rstrip().endswith(":")
                and b - pa <= limit):
            packed[-1] = (packed[-1][0], _end_before(text, packed[-1][0], pa))
            packed.append((pa, b))
        else:
            packed.append((a, b))
    return packed


def _end_before(text: str, start: int, end: int) -> int:
    """The end of text[start:end] without its trailing whitespace."""
    return start + len(text[start:end].rstrip())


def sections(doc: SourceDocument) -> list[tuple[str, int, int]]:
    """(heading path, body start, body end) for every section, in document order."""
    text, body_start = doc.text, doc.body_start
    out: list[tuple[str, int, int]] = []
    stack: list[tuple[int, str]] = []
    cursor = body_start
    path = ""
    for m in HEADING.finditer(text, body_start):
        out.append((path, cursor, m.start()))
        level, name = len(m.group(1)), clean_heading(m.group(2))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, name))
        # The document title (a lone level-1 heading) is not repeated in every path.
        names = [n for lvl, n in stack if not (lvl == 1 and n == doc.title)]
        path = SECTION_SEP.join(names)
        cursor = m.end()
    out.append((path, cursor, len(text)))
    return [(p, a, b) for p, a, b in out if text[a:b].strip()]


def chunk_id(document: str, section: str, text: str, occurrence: int) -> str:
    digest = hashlib.sha256(f"{document}\x00{section}\x00{text}\x00{occurrence}".encode())
    return digest.hexdigest()[:24]


def chunk_document(doc: SourceDocument, limit: int = 900) -> list[Chunk]:
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for section, a, b in sections(doc):
        units: list[tuple[int, int]] = []
        for pa, pb in _paragraph_spans(doc.text, a, b):
            units.extend(_sentence_spans(doc.text, pa, pb) if pb - pa > limit else [(pa, pb)])
        for ca, cb in _pack(units, limit, doc.text):
            text = doc.text[ca:cb]
            key = f"{section}\x00{text}"
            occurrence = seen.get(key, 0)
            seen[key] = occurrence + 1
            gap = doc.text[chunks[-1].end if chunks else doc.body_start:ca]
            chunks.append(
                Chunk(
                    id=chunk_id(doc.id, section, text, occurrence),
                    document=doc.id,
                    title=doc.title,
                    section=section,
                    text=text,
                    start=ca,
                    end=cb,
                    before=gap if len(gap) <= MAX_BEFORE else "",
                )
            )
    return chunks


def embedding_text(section: str, text: str) -> str:
    """What gets embedded: the heading path gives short chunks (a list of countries) context.

    The document title is left out: it is the same for every chunk of a document and would
    drown a short chunk's own words (and, in keyword search, match every chunk at once).
    """
    return f"{section}\n{text}" if section else text


@dataclass(frozen=True)
class Sentence:
    """A sentence (or list item) of a chunk: offsets into the chunk's text."""

    start: int
    end: int
    text: str  # as a reader sees it (markdown stripped)

    def embedding_text(self, section: str) -> str:
        """The innermost heading says what a short sentence is about ("AEGIS: Countries: ...")."""
        head = last_heading(section)
        return f"{head}: {self.text}" if head else self.text


def sentences(text: str) -> list[Sentence]:
    """The sentences of a chunk, the units that sentence search and the extractive answerer
    score (one definition, so stored sentence vectors serve both)."""
    out = []
    for a, b in sentence_spans(text):
        plain = strip_markdown(text[a:b]).strip()
        if plain:
            out.append(Sentence(a, b, plain))
    return out
