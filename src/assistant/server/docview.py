"""The document view: GET /docs/<document>?start=S&end=E&v=<hash>&c=<collection>&q=<quote>, a
citation opened in its document (`c` names a collection other than `default`).

The page shows the document's text as the index holds it (rebuilt from its chunks, see
sources.py) with the heading path of each section, page markers for PDFs, and the cited span
in a `<mark id="cite">`, which the link's `#cite` fragment scrolls into view (and
static/docview.js when the fragment was lost, e.g. after the API key form).

Every character from a document, a link or the index is escaped: nothing in them runs as HTML
or JavaScript. The page has no inline script, and its Content-Security-Policy allows only its
own stylesheet (by hash) and scripts from the app itself.

A link stays checkable across re-ingests: the passage is highlighted when the text at its
offsets is still the quote the link carries (or, without a quote, when the content hash `v`
is still the document's). Otherwise the page says the document has changed, and highlights
the quote where it is now, or shows it as it was.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from html import escape
from itertools import pairwise
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from ..catalog import CollectionError
from ..sources import DocumentText
from ..types import QUOTE_LINK_CHARS
from .api import AssistantLike

SCRIPT_PATH = "/docview.js"  # static/docview.js, served by app.py beside /widget.js
STYLE = """
body { margin: 0; font: 16px/1.6 system-ui, 'DejaVu Sans', sans-serif; color: #1b1f24;
       background: #f6f7f9; }
header { position: sticky; top: 0; z-index: 1; background: #fff; padding: .6rem 1.5rem .7rem;
         border-bottom: 1px solid #d5d9de; box-shadow: 0 2px 8px rgba(0,0,0,.06); }
.bar { display: flex; flex-wrap: wrap; gap: .2rem 1rem; font-size: .85rem; color: #57606a; }
.bar a { color: #1f5fbf; }
h1 { margin: .15rem 0 0; font-size: 1.3rem; line-height: 1.3; }
.where { margin: .15rem 0 0; color: #57606a; font-size: .95rem; }
.where strong { color: #1b1f24; }
main { max-width: 50rem; margin: 0 auto; padding: 1rem 1.5rem 60vh; background: #fff;
       min-height: 60vh; }
.notice { margin: .5rem 0 1rem; padding: .6rem .8rem; border-radius: 8px; background: #fff4d6;
          border: 1px solid #e0b252; }
.notice.same { background: #eaf5ea; border-color: #8cc08c; }
.notice p { margin: 0; }
blockquote { margin: .6rem 0 0; padding: .5rem .8rem; border-left: 4px solid #b08800;
             background: #fffbe6; white-space: pre-wrap; overflow-wrap: anywhere; }
h2.section { font-size: 1.1rem; margin: 1.6rem 0 .5rem; color: #24292f; }
.chunk { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0 0 1rem; }
.chunk.cited { border-left: 4px solid #e0a800; margin-left: -1rem; padding-left: calc(1rem - 4px); }
.page { display: block; margin: 1.2rem 0 .6rem; color: #6a737d; font-size: .85rem;
        border-top: 1px dashed #c9ced4; padding-top: .2rem; }
mark { background: #ffe27a; color: inherit; padding: .1rem 0; }
#cite, .page { scroll-margin-top: 35vh; }
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()


@dataclass(frozen=True)
class Finding:
    """What a link finds in the document as it is now."""

    span: tuple[int, int] | None  # the passage to highlight
    notice: str = ""  # what the reader should know first
    same: bool = True  # the notice is good news (the passage is unchanged)
    quote: str = ""  # the quote as it was, when it is no longer there


def check_link(doc: DocumentText, start: int | None, end: int | None, version: str,
               quote: str) -> Finding:
    """Where the passage a link names is in `doc` now, and what to say about it."""
    if start is None or end is None or end <= start:
        return Finding(None)
    here = doc.passage(start, end)
    if quote:
        # A quote of QUOTE_LINK_CHARS characters may be the start of a longer one.
        holds = here is not None and (here == quote or (len(quote) >= QUOTE_LINK_CHARS
                                                        and here.startswith(quote)))
    else:
        holds = here is not None and (not version or doc.same_version(version))
    changed = bool(version) and not doc.same_version(version)
    if holds:
        if changed:
            return Finding((start, end), "This document has changed since the link was made; "
                           "the cited passage has not, and is highlighted below.")
        return Finding((start, end))
    found = doc.find(quote)
    if found is not None:
        return Finding(found, "This document has changed since the link was made. The "
                       "quoted passage is still in it, at another place: it is highlighted "
                       "below.", same=False)
    if quote:
        shown = quote + ("…" if len(quote) >= QUOTE_LINK_CHARS else "")
        return Finding(None, "This document has changed since the link was made: the cited "
                       "passage is no longer in it. The quote as it was:", False, shown)
    return Finding(None, f"The passage this link points to (characters {start}–{end}) is "
                   "not in the document as it is now, and the link does not carry its quote.",
                   same=False)


def _chunk_html(doc: DocumentText, span: tuple[int, int] | None, breaks: dict[int, int]
                ) -> str:
    """The document's chunks in order, with section headings, page markers and the mark."""
    out: list[str] = []
    section: str | None = None
    cited = cited_chunk = False
    previous_end = -1
    for c in doc.chunks:
        for offset in sorted(o for o in breaks if previous_end <= o <= c.start):
            out.append(_page_marker(breaks[offset]))
        previous_end = c.end
        if c.section != section:
            section = c.section
            if section:
                # A passage that runs over headings (a section's outline) marks them too.
                over = span is not None and span[0] < c.start and \
                    c.start - len(c.before) < span[1]
                name = f"<mark>{escape(section)}</mark>" if over else escape(section)
                out.append(f'<h2 class="section">{name}</h2>')
        cuts = {c.start, c.end} | {o for o in breaks if c.start < o < c.end}
        if span is not None:
            cuts |= {x for x in span if c.start < x < c.end}
        points = sorted(cuts)
        parts: list[str] = []
        for a, b in pairwise(points):
            if a in breaks and a != c.start:
                parts.append(_page_marker(breaks[a]))
            piece = escape(c.text[a - c.start:b - c.start])
            if span is not None and span[0] <= a and b <= span[1]:
                # The first piece of the passage is the one the link's #cite scrolls to.
                piece = ("<mark>" if cited else '<mark id="cite">') + piece + "</mark>"
                cited = True
            parts.append(piece)
        # The chunk the passage starts in (or, for a passage that starts at a heading,
        # the first chunk after it).
        holds = span is not None and not cited_chunk and span[0] < c.end and c.start < span[1]
        cited_chunk = cited_chunk or holds
        out.append(f'<div class="chunk{" cited" if holds else ""}">{"".join(parts)}</div>')
    return "\n".join(out)


def _page_marker(page: int) -> str:
    return f'<span class="page" id="page-{page}">Page {page}</span>'


def _root(document: str) -> str:
    """The app's base URL, relative to the view of `document` (which may hold slashes)."""
    return "../" * (1 + document.count("/"))


def _page(title: str, document: str, header: str, main: str) -> str:
    root = _root(document)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)} · Document assistant</title>\n"
        f"<style>{STYLE}</style>\n"
        f'<script src="{root}{SCRIPT_PATH.lstrip("/")}" defer></script>\n'
        f"</head><body>\n<header>\n{header}\n</header>\n<main>\n{main}\n</main>\n"
        "</body></html>\n"
    )


def _bar(document: str, detail: str = "") -> str:
    return (f'<div class="bar"><a class="back" href="{_root(document)}">Document assistant</a>'
            f'<span class="meta">{escape(document)}{detail}</span></div>')


def _notice(text: str, quote: str, *, same: bool, anchor: bool) -> str:
    cls = "notice same" if same else "notice"
    ident = ' id="cite"' if anchor else ""  # nothing to highlight: the link leads here
    shown = f"<blockquote>{escape(quote)}</blockquote>" if quote else ""
    return f'<div class="{cls}"{ident} role="status"><p>{escape(text)}</p>{shown}</div>'


def render_view(doc: DocumentText, finding: Finding) -> str:
    """The whole page: a header (title, where the passage is), any notice, and the text."""
    pages = len(doc.pages)
    detail = f" · PDF, {pages} page{'s' if pages != 1 else ''}" if doc.is_pdf else ""
    header = [_bar(doc.document, detail), f"<h1>{escape(doc.title)}</h1>"]
    if finding.span is not None:
        where = []
        section = doc.section_at(finding.span[0])
        if section:
            where.append(f"<strong>{escape(section)}</strong>")
        first, last = doc.page_at(finding.span[0]), doc.page_at(finding.span[1] - 1)
        if first is not None and last is not None:
            where.append(f'<a href="#page-{first}">page {first}</a>' if first == last else
                         f'<a href="#page-{first}">pages {first}–{last}</a>')
        if where:
            header.append(f'<p class="where">Cited passage: {" · ".join(where)}</p>')
    main = []
    if finding.notice:
        main.append(_notice(finding.notice, finding.quote, same=finding.same,
                            anchor=finding.span is None))
    breaks: dict[int, int] = {}
    for n, offset in enumerate(doc.pages, 1):
        breaks[offset] = n  # an empty page starts where the next one does: the last wins
    main.append(_chunk_html(doc, finding.span, breaks))
    return _page(doc.title, doc.document, "\n".join(header), "\n".join(main))


def render_missing(document: str, quote: str, why: str = "") -> str:
    header = _bar(document) + "\n<h1>Not in the index</h1>"
    main = _notice((why or "No document of this name is in the index (any more).")
                   + (" The quote as it was:" if quote else ""), quote, same=False, anchor=True)
    return _page("Not in the index", document, header, main)


def content_security_policy(frame_ancestors: str) -> str:
    return ("default-src 'none'; "
            f"style-src 'sha256-{STYLE_HASH}'; script-src 'self'; "
            f"base-uri 'none'; form-action 'none'; {frame_ancestors}")


def make_docs_router(assistant: AssistantLike, frame_ancestors: str) -> APIRouter:
    """GET /docs/<document>: the view; `frame_ancestors` is the app's own CSP directive."""
    router = APIRouter()
    headers = {"Content-Security-Policy": content_security_policy(frame_ancestors),
               "Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"}

    @router.get("/docs/{document:path}", include_in_schema=False)
    async def document_view(
        document: str,
        start: Annotated[int | None, Query(ge=0)] = None,
        end: Annotated[int | None, Query(ge=0)] = None,
        v: Annotated[str, Query(max_length=64)] = "",
        q: Annotated[str, Query(max_length=4 * QUOTE_LINK_CHARS)] = "",
        c: Annotated[str, Query(max_length=100)] = "",
    ) -> HTMLResponse:
        """A document's text with the passage [start, end) highlighted (see the module doc)."""
        try:
            doc = await run_in_threadpool(assistant.document, document, c or None)
        except CollectionError as exc:
            return HTMLResponse(render_missing(document, q, str(exc)),
                                status_code=exc.status, headers=headers)
        if doc is None:
            return HTMLResponse(render_missing(document, q), status_code=404, headers=headers)
        page = render_view(doc, check_link(doc, start, end, v, q))
        return HTMLResponse(page, headers=headers)

    return router
