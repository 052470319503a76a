"""Where a list that is a document's own structure comes from: a section's sub-headings.

A brochure gives "five sets of measures" as five headed sub-sections, and a treaty its
offences as one article each: the items are headings, and no chunk holds a heading (chunks
never cross one), so no evidence sentence names them all. When the evidence already spans
a section (its own text and one of its parts, or two of its parts), the section's outline
joins the evidence as one more numbered item: the model reads the sub-headings, and the
citation quotes the stretch of the document from the first sub-heading to the last,
verbatim (rebuilt from the chunks and the headings kept between them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from .answerers.generative import OUTLINE_ID, Candidate
from .chunking import HEADING, SECTION_SEP, Chunk, clean_heading
from .sources import text_between
from .text import last_heading
from .types import Passage

log = logging.getLogger(__name__)

MAX_PARTS = 15  # a section with more sub-sections is a table of contents, not a list
MAX_CHARS = 4000  # the longest stretch an outline's citation may quote

ChunksOf = Callable[[str], Sequence[Chunk]]


def parent(section: str) -> str:
    return section.rsplit(SECTION_SEP, 1)[0] if SECTION_SEP in section else ""


def _within(section: str, group: str) -> bool:
    return section.startswith(group + SECTION_SEP)


def parts(chunks: Sequence[Chunk], group: str) -> list[str]:
    """The paths of `group`'s direct sub-sections, in document order (a sub-section with
    no text of its own, only sub-sections, counts too)."""
    out: dict[str, None] = {}
    for c in chunks:
        if _within(c.section, group):
            rest = c.section[len(group) + len(SECTION_SEP):]
            out.setdefault(group + SECTION_SEP + rest.split(SECTION_SEP, 1)[0])
    return list(out)


def heading_line(chunks: Sequence[Chunk], section: str) -> tuple[int, int] | None:
    """The offsets of the heading line that opens `section`: it lies in the text kept
    before the section's first chunk."""
    name = last_heading(section)
    first = next((c for c in chunks if c.section == section or _within(c.section, section)),
                 None)
    if first is None or not first.before:
        return None
    found = [m for m in HEADING.finditer(first.before) if clean_heading(m.group(2)) == name]
    if not found:
        return None
    base = first.start - len(first.before)
    return base + found[-1].start(), base + found[-1].end()


def _outline(chunks: Sequence[Chunk], group: str, names: list[str],
             template: Passage) -> Candidate | None:
    first, last = heading_line(chunks, names[0]), heading_line(chunks, names[-1])
    if first is None or last is None or not first[0] < last[1] <= first[0] + MAX_CHARS:
        return None
    text = text_between(chunks, first[0], last[1])
    if text is None:
        return None
    shown = "Sections: " + "; ".join(last_heading(n) for n in names)
    passage = Passage(id=f"{OUTLINE_ID}{template.document}:{first[0]}",
                      document=template.document, title=template.title, section=group,
                      text=text, start=first[0], end=last[1])
    return Candidate(passage, 0, len(text), outline=shown)


def outline_for(cands: Sequence[Candidate], chunks_of: ChunksOf) -> Candidate | None:
    """The outline of the first section (a candidate's own, or the one holding it) that the
    candidates span: its own text and one of its parts, or two of its parts. None when no
    candidate's section has between 2 and MAX_PARTS parts, or its headings are not held."""
    seen: set[tuple[str, str]] = set()
    sections: dict[str, set[str]] = {}  # document -> the sections its candidates come from
    for c in cands:
        sections.setdefault(c.passage.document, set()).add(c.passage.section)
    for c in cands:
        doc, section = c.passage.document, c.passage.section
        here = sections[doc]
        for group in (section, parent(section)):
            if not group or (doc, group) in seen:
                continue
            seen.add((doc, group))
            chunks = chunks_of(doc)
            names = parts(chunks, group)
            covered = {n for n in names if any(s == n or _within(s, n) for s in here)}
            if not 2 <= len(names) <= MAX_PARTS:
                continue
            if len(covered) >= 2 or (covered and group in here):
                found = _outline(chunks, group, names, c.passage)
                if found is not None:
                    log.debug("outline of %s added to the evidence", group)
                    return found
    return None
