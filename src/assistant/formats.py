"""Word (.docx), PowerPoint (.pptx) and EPUB files: recognised by their content, read into
the Markdown-like text the chunker follows (as HTML is), so their structure becomes headings:

- Word: paragraphs in the Title and Heading 1-9 styles (or a style based on one, or with an
  outline level) become headings; list paragraphs become `- ` items; each table row becomes
  one line, its cells joined by ` | `.
- PowerPoint: one section per slide, headed by the slide's title (`Slide N` when it has none),
  its text frames (a paragraph per bullet) and tables in reading order (top to bottom, left
  to right), then its speaker notes under a `Speaker notes` heading. Pictures are skipped
  (no captioning model).
- EPUB: the spine's chapters in reading order, each converted like HTML; a chapter that does
  not start with a heading gets one from the table of contents.

The text built here is the document's text: chunk offsets and citation quotes point into it.

Why not llama-index's file readers: its DocxReader (docx2txt) and EpubReader (html2text)
return flat text without headings, its slide reader brings in an image-captioning model, and
the package pins pypdf below the version installed here. python-docx and python-pptx (MIT)
read the Office files; an EPUB is a zip of XHTML, read here with zipfile, ElementTree and
the HTML conversion of documents.py (EbookLib is AGPL-licensed).
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from xml.etree import ElementTree

# Formats recognised by content, with the name a message uses for each.
NAMES = {
    "pdf": "PDF",
    "docx": "Word document (.docx)",
    "pptx": "PowerPoint presentation (.pptx)",
    "epub": "EPUB book",
}
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Office 97-2003 (.doc, .ppt, .xls)
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# A zip that unpacks to more than this is refused before anything is unpacked (zip bombs).
MAX_UNZIPPED_BYTES = 512 * 1024 * 1024
MAX_ZIP_ENTRIES = 20_000

# Main-part content types in an Office file's [Content_Types].xml.
_OOXML = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": "docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": "pptx",
    "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml": "pptx",
}
_OOXML_OTHER = {  # recognised, not read: what to tell the user
    "wordprocessingml.template": "a Word template (.dotx); save it as a .docx document",
    "ms-word.document.macroEnabled": "a macro-enabled Word document (.docm); save it as .docx",
    "ms-word.template.macroEnabled": "a Word template (.dotm); save it as a .docx document",
    "presentationml.slideshow": "a PowerPoint show (.ppsx); save it as a .pptx presentation",
    "ms-powerpoint.slideshow.macroEnabled": "a PowerPoint show (.ppsm); save it as .pptx",
    "presentationml.template": "a PowerPoint template (.potx); save it as .pptx",
    "spreadsheetml": "an Excel workbook; tables of figures are not supported",
}
# Titles that tools write by default: no better than none.
_PLACEHOLDER_TITLES = {"powerpoint presentation", "presentation", "document", "untitled"}


class FormatError(Exception):
    """A file that is recognised but cannot be read; the message says why (documents.py
    turns it into a DocumentError)."""


class Sniffed:
    """What a file's first bytes (and, for a zip, its table of contents) say it is."""

    def __init__(self, kind: str, detail: str = "") -> None:
        # kind: a key of NAMES, "" (no binary signature: a text format, by its extension),
        # or "other" (binary, recognised, unsupported: `detail` says what it is).
        self.kind = kind
        self.detail = detail


def sniff(path: Path) -> Sniffed:
    """The format a file's content shows, whatever its name says."""
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"%PDF-"):
        return Sniffed("pdf")
    if head.startswith(OLE_MAGIC):
        return Sniffed("other", "an Office 97-2003 file (.doc, .ppt or .xls); save it as "
                                ".docx or .pptx")
    if not head.startswith(ZIP_MAGIC):
        return Sniffed("")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "mimetype" in names:
                mimetype = zf.read("mimetype")[:100].strip()
                if mimetype == b"application/epub+zip":
                    return Sniffed("epub")
                if mimetype.startswith(b"application/vnd.oasis.opendocument"):
                    return Sniffed("other", "an OpenDocument file (.odt, .odp); save it as "
                                            ".docx or .pptx")
            if "[Content_Types].xml" in names:
                types = re.findall(rb'ContentType="([^"]+)"',
                                   zf.read("[Content_Types].xml")[:1_000_000])
                for raw in types:
                    ctype = raw.decode("ascii", "replace")
                    if ctype in _OOXML:
                        return Sniffed(_OOXML[ctype])
                for raw in types:
                    ctype = raw.decode("ascii", "replace")
                    for key, what in _OOXML_OTHER.items():
                        if key in ctype and ctype.endswith("main+xml"):
                            return Sniffed("other", what)
            if "META-INF/container.xml" in names:
                return Sniffed("epub")  # an EPUB without its mimetype entry
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, OSError, ValueError) as exc:
        return Sniffed("other", f"a damaged zip archive ({exc})")
    return Sniffed("other", "a zip archive that is not a Word, PowerPoint or EPUB file")


def _check_zip(path: Path) -> None:
    """Refuse a zip that would unpack to too much (declared sizes; zipfile checks them)."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise FormatError(f"too many entries in the archive ({len(infos)}; limit "
                              f"{MAX_ZIP_ENTRIES})")
        total = sum(i.file_size for i in infos)
        if total > MAX_UNZIPPED_BYTES:
            raise FormatError(f"unpacks to {total} bytes (limit {MAX_UNZIPPED_BYTES})")


def read(kind: str, path: Path) -> tuple[str, str]:
    """(text, title) of a docx, pptx or epub file; FormatError when it cannot be read."""
    readers = {"docx": read_docx, "pptx": read_pptx, "epub": read_epub}
    try:
        _check_zip(path)
        return readers[kind](path)
    except FormatError:
        raise
    except Exception as exc:  # the parsers raise many types on damaged input
        detail = str(exc).strip() or type(exc).__name__
        raise FormatError(f"damaged or unreadable {NAMES[kind]} ({detail})") from exc


# -- shared ----------------------------------------------------------------------------------
_HEADING_LIKE = re.compile(r"^(#{1,6})(?=[ \t]|$)")


def clean(text: str) -> str:
    """One line: runs of whitespace (tabs, line breaks) become one space."""
    return " ".join(text.split())


def body_line(text: str) -> str:
    """A line of body text that would read as a Markdown heading gets a backslash first, so
    the chunker does not start a section at it."""
    return "\\" + text if _HEADING_LIKE.match(text) else text


def heading(level: int, text: str) -> str:
    return "#" * max(1, min(level, 6)) + " " + text


def meaningful_title(title: str | None) -> str:
    title = clean(title or "")
    return "" if title.lower() in _PLACEHOLDER_TITLES else title


def _join(blocks: Iterable[str]) -> str:
    return "\n\n".join(b for b in blocks if b) + "\n"


# -- Word --------------------------------------------------------------------------------------
_HEADING_STYLE = re.compile(r"heading\s*([1-9])", re.IGNORECASE)


def _outline_level(ppr: Any) -> int | None:
    """A paragraph-properties element's outline level, 1-based; None for body text."""
    lvl = getattr(ppr, "outlineLvl", None) if ppr is not None else None
    val = getattr(lvl, "val", None)
    return int(val) + 1 if val is not None and 0 <= int(val) < 9 else None


def _docx_heading_level(paragraph: Any) -> int | None:
    """0 for the Title style, 1-9 for headings, None for body text."""
    style, depth = paragraph.style, 0
    while style is not None and depth < 10:
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 0
        m = _HEADING_STYLE.fullmatch(name)
        if m:
            return int(m.group(1))
        level = _outline_level(getattr(style.element, "pPr", None))
        if level is not None:
            return level
        style, depth = style.base_style, depth + 1
    return _outline_level(paragraph._p.pPr)


def _docx_is_list(paragraph: Any) -> bool:
    ppr = paragraph._p.pPr
    if ppr is not None and ppr.numPr is not None:
        return True
    name = (paragraph.style.name or "") if paragraph.style is not None else ""
    return name.lower().startswith("list")


def _table_rows(rows: Iterable[Iterable[str]]) -> list[str]:
    out = []
    for cells in rows:
        texts = [clean(c) for c in cells]
        if any(texts):
            out.append(body_line(" | ".join(t for t in texts if t)))
    return out


def _docx_table(table: Any) -> list[str]:
    rows = []
    for row in table.rows:
        seen: set[int] = set()
        cells = []
        for cell in row.cells:  # a merged cell appears once per grid column it spans
            if id(cell._tc) not in seen:
                seen.add(id(cell._tc))
                cells.append(cell.text)
        rows.append(cells)
    return _table_rows(rows)


def read_docx(path: Path) -> tuple[str, str]:
    import docx
    from docx.table import Table

    document = docx.Document(str(path))
    blocks: list[str] = []
    first_title = first_heading = ""
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            blocks.extend(_docx_table(item))
            continue
        text = clean(item.text)
        if not text:
            continue
        level = _docx_heading_level(item)
        if level is None:
            blocks.append(("- " + text) if _docx_is_list(item) else body_line(text))
            continue
        if level == 0:
            first_title = first_title or text
        first_heading = first_heading or text
        blocks.append(heading(max(level, 1), text))
    title = meaningful_title(document.core_properties.title) or first_title or first_heading
    return _join(blocks), title


# -- PowerPoint --------------------------------------------------------------------------------
def _reading_order(shapes: Iterable[Any]) -> list[Any]:
    return sorted(shapes, key=lambda s: (s.top or 0, s.left or 0))


def _pptx_shape(shape: Any) -> Iterator[str]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        for inner in _reading_order(shape.shapes):
            yield from _pptx_shape(inner)
        return
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        # One block per paragraph (a bullet), so a long text frame can be cut between them.
        for paragraph in shape.text_frame.paragraphs:
            text = clean(paragraph.text)
            if text:
                yield body_line(text)
    elif getattr(shape, "has_table", False) and shape.has_table:
        yield from _table_rows([cell.text for cell in row.cells] for row in shape.table.rows)


def read_pptx(path: Path) -> tuple[str, str]:
    from pptx import Presentation

    deck = Presentation(str(path))
    blocks: list[str] = []
    first_title = ""
    for n, slide in enumerate(deck.slides, start=1):
        title_shape = slide.shapes.title
        title = clean(title_shape.text_frame.text) if title_shape is not None else ""
        first_title = first_title or title
        blocks.append(heading(1, title or f"Slide {n}"))
        for shape in _reading_order(slide.shapes):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            blocks.extend(_pptx_shape(shape))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = [body_line(clean(p.text))
                     for p in slide.notes_slide.notes_text_frame.paragraphs if clean(p.text)]
            if notes:
                blocks += [heading(2, "Speaker notes"), *notes]
    title = meaningful_title(deck.core_properties.title) or first_title
    return _join(blocks), title


# -- EPUB --------------------------------------------------------------------------------------
_NS = {
    "c": "urn:oasis:names:tc:opendocument:xmlns:container",
    "opf": "http://www.idpf.org/2007/opf",
    "dc": "http://purl.org/dc/elements/1.1/",
    "ncx": "http://www.daisy.org/z3986/2005/ncx/",
    "enc": "http://www.w3.org/2001/04/xmlenc#",
}
_CHAPTER_TYPES = {"application/xhtml+xml", "text/html", "application/xml", "text/xml"}


def _xml(data: bytes) -> ElementTree.Element:
    # The standard parser fetches no external entities (and its expat limits entity
    # expansion), so a hostile book cannot reach the network or blow up memory.
    return ElementTree.fromstring(data)


def _resolve(base: str, href: str) -> str:
    """A manifest or TOC link as a path inside the zip (fragment dropped)."""
    href = unquote(href.split("#", 1)[0])
    return posixpath.normpath(posixpath.join(base, href)) if href else ""


def _decode(raw: bytes) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _toc(zf: zipfile.ZipFile, opf: ElementTree.Element, base: str,
         manifest: dict[str, tuple[str, str, str]]) -> dict[str, str]:
    """Chapter file -> its title in the table of contents (the first entry that points
    into it): EPUB 3's navigation document, else EPUB 2's NCX."""
    from bs4 import BeautifulSoup

    titles: dict[str, str] = {}
    nav = next((href for href, _, props in manifest.values() if "nav" in props.split()), "")
    if nav:
        soup = BeautifulSoup(_decode(zf.read(nav)), "html.parser")
        navs = soup.find_all("nav")
        toc = next((n for n in navs if "toc" in str(n.get("epub:type", ""))),
                   navs[0] if navs else None)
        for a in toc.find_all("a", href=True) if toc is not None else []:
            target, label = _resolve(posixpath.dirname(nav), str(a["href"])), clean(a.get_text())
            if target and label:
                titles.setdefault(target, label)
    if titles:
        return titles
    spine = opf.find("opf:spine", _NS)
    ncx_id = spine.get("toc", "") if spine is not None else ""
    ncx = manifest.get(ncx_id, ("", "", ""))[0] or next(
        (href for href, mtype, _ in manifest.values() if mtype == "application/x-dtbncx+xml"),
        "")
    if ncx:
        root = _xml(zf.read(ncx))
        for point in root.iter(f"{{{_NS['ncx']}}}navPoint"):
            nav_label = point.find("ncx:navLabel", _NS)
            label = clean("".join(nav_label.itertext()) if nav_label is not None else "")
            content = point.find("ncx:content", _NS)
            target = _resolve(posixpath.dirname(ncx), content.get("src", "")) \
                if content is not None else ""
            if target and label:
                titles.setdefault(target, label)
    return titles


def _encrypted(zf: zipfile.ZipFile) -> set[str]:
    try:
        root = _xml(zf.read("META-INF/encryption.xml"))
    except KeyError:
        return set()
    return {_resolve("", ref.get("URI", ""))
            for ref in root.iter(f"{{{_NS['enc']}}}CipherReference")}


def read_epub(path: Path) -> tuple[str, str]:
    from .documents import _html_to_markdown as html_to_markdown

    with zipfile.ZipFile(path) as zf:
        container = _xml(zf.read("META-INF/container.xml"))
        rootfile = container.find(".//c:rootfile", _NS)
        if rootfile is None or not rootfile.get("full-path"):
            raise FormatError("its container names no package document")
        opf_path = rootfile.get("full-path", "")
        opf = _xml(zf.read(opf_path))
        base = posixpath.dirname(opf_path)
        manifest = {
            item.get("id", ""): (_resolve(base, item.get("href", "")),
                                 item.get("media-type", ""), item.get("properties", ""))
            for item in opf.iterfind("opf:manifest/opf:item", _NS)
        }
        spine = [manifest[ref.get("idref", "")]
                 for ref in opf.iterfind("opf:spine/opf:itemref", _NS)
                 if ref.get("idref", "") in manifest]
        chapters = [(href, props) for href, mtype, props in spine
                    if mtype in _CHAPTER_TYPES and "nav" not in props.split()]
        if not chapters:
            raise FormatError("its reading order (spine) lists no chapters")
        locked = _encrypted(zf) & {href for href, _ in chapters}
        if locked:
            raise FormatError("its chapters are encrypted (DRM); it cannot be read")
        toc = _toc(zf, opf, base, manifest)
        blocks: list[str] = []
        for href, _ in chapters:
            text, _title = html_to_markdown(_decode(zf.read(href)))
            text = text.strip()
            chapter = toc.get(href, "")
            if chapter and not text.startswith("#"):
                blocks.append(heading(1, chapter))
            blocks.append(text)
        dc_title = opf.find("opf:metadata/dc:title", _NS)
        title = clean("".join(dc_title.itertext())) if dc_title is not None else ""
    return _join(blocks), meaningful_title(title)
