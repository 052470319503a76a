"""A document as the index holds it, for citations a reader can check: its text, rebuilt from
its chunks, its content hash and, for PDFs, where each page starts.

Chunks are verbatim slices `text[start:end]` of their document and never overlap, and each
carries what lies between it and the chunk before (headings, blank lines): placing them at
their offsets rebuilds the document's body, with every offset unchanged, so a citation's
`start`/`end` index the same text. Nothing else has to be stored, and what is shown is
exactly what answers are quoted from.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .chunking import Chunk
from .types import VERSION_CHARS


def content_hash(entry: dict[str, Any]) -> str:
    """The SHA-256 of a document's text, from its index manifest entry (the fingerprint
    starts with it)."""
    return str(entry.get("fingerprint", "")).split(":", 1)[0]


def page_at(pages: Sequence[int], offset: int) -> int | None:
    """The 1-based page that `offset` falls on, given where each page starts; None without
    pages (not a PDF)."""
    if not pages:
        return None
    return max(bisect.bisect_right(pages, offset), 1)


def text_between(chunks: Sequence[Chunk], start: int, end: int) -> str | None:
    """The document's text [start, end), rebuilt from its chunks (in document order) and
    the text before each; None when some of it is not held (a gap too long to keep)."""
    out: list[str] = []
    pos = start
    for c in chunks:
        if c.end <= pos:
            continue
        if c.start > pos:
            gap = c.start - len(c.before)  # where the text kept before `c` starts
            if gap > pos:
                return None
            out.append(c.before[pos - gap:min(end, c.start) - gap])
            pos = min(end, c.start)
        if pos >= end:
            break
        out.append(c.text[pos - c.start:min(end, c.end) - c.start])
        pos = min(end, c.end)
        if pos >= end:
            break
    return "".join(out) if pos >= end else None


@dataclass(frozen=True)
class DocumentText:
    """One indexed document: its chunks in order, its content hash and its page starts."""

    document: str
    title: str
    version: str  # SHA-256 of the document's text, hex
    chunks: tuple[Chunk, ...]
    pages: tuple[int, ...] = ()

    @classmethod
    def build(cls, document: str, entry: dict[str, Any], chunks: Sequence[Chunk]
              ) -> DocumentText:
        kept: list[Chunk] = []
        for c in sorted(chunks, key=lambda c: (c.start, c.end)):
            if c.end > c.start and (not kept or c.start >= kept[-1].end):
                kept.append(c)  # (chunks never overlap; one that did would be dropped)
        title = str(entry.get("title") or (kept[0].title if kept else "") or document)
        pages = tuple(int(p) for p in entry.get("pages") or ())
        return cls(document, title, content_hash(entry), tuple(kept), pages)

    @property
    def is_pdf(self) -> bool:
        return bool(self.pages)

    def same_version(self, version: str) -> bool:
        """Does a link's `v` (a prefix of the content hash) name this text?"""
        return len(version) >= VERSION_CHARS and self.version.startswith(version.lower())

    def chunk_at(self, start: int, end: int) -> Chunk | None:
        """The chunk that holds the span [start, end), if one does."""
        i = bisect.bisect_right([c.start for c in self.chunks], start) - 1
        if i >= 0 and start < end <= self.chunks[i].end:
            return self.chunks[i]
        return None

    def passage(self, start: int, end: int) -> str | None:
        """The text of [start, end), or None when it is not (all) in the document. A
        passage may run over several chunks and the headings between them."""
        c = self.chunk_at(start, end)
        if c is not None:
            return c.text[start - c.start:end - c.start]
        return text_between(self.chunks, start, end)

    def find(self, quote: str) -> tuple[int, int] | None:
        """Where `quote` is in the text (its first place), if it is."""
        if not quote:
            return None
        for c in self.chunks:
            i = c.text.find(quote)
            if i >= 0:
                return c.start + i, c.start + i + len(quote)
        if not self.chunks:
            return None
        # A quote over several chunks (a section's outline): look in the rebuilt body.
        first = self.chunks[0].start - len(self.chunks[0].before)
        body = text_between(self.chunks, first, self.chunks[-1].end)
        i = body.find(quote) if body is not None else -1
        return (first + i, first + i + len(quote)) if i >= 0 else None

    def section_at(self, offset: int) -> str:
        i = bisect.bisect_right([c.start for c in self.chunks], offset) - 1
        return self.chunks[max(i, 0)].section if self.chunks else ""

    def page_at(self, offset: int) -> int | None:
        return page_at(self.pages, offset)
