"""Reading source files into plain text.

Every loader returns a `SourceDocument` whose `text` is what chunk offsets point into:
the file itself for Markdown and plain text, the extracted text for HTML, PDF, Word,
PowerPoint and EPUB (formats.py). Binary formats are recognised by their content, whatever
the file's name says; text formats by their extension.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from . import formats

SUPPORTED_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx", ".pptx",
                      ".epub"}
# What a file's extension promises; binary formats are checked against the content.
_SUFFIX_KIND = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".html": "html",
                ".htm": "html", ".pdf": "pdf", ".docx": "docx", ".pptx": "pptx",
                ".epub": "epub"}
MAX_FILE_BYTES = 50 * 1024 * 1024


class DocumentError(Exception):
    """A file that cannot be ingested, with a reason a user can act on."""


@dataclass
class SourceDocument:
    id: str  # stable id: path relative to the folder it was found in
    path: Path
    title: str
    text: str
    kind: str  # "markdown" | "text" | "html" | "pdf" | "docx" | "pptx" | "epub"
    metadata: dict[str, str] = field(default_factory=dict)
    body_start: int = 0  # offset where the body starts (after front matter)
    # PDFs: where each page's text starts in `text` (page n at pages[n-1]; an empty page
    # starts where the next one does).
    pages: list[int] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*\n", re.DOTALL)


def split_front_matter(text: str) -> tuple[dict[str, str], int]:
    """Return (front matter as flat str dict, offset where the body starts)."""
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}, 0
    try:
        data = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError:
        return {}, 0
    if not isinstance(data, dict):
        return {}, 0
    flat = {str(k): v if isinstance(v, str) else str(v) for k, v in data.items()}
    return flat, m.end()


def _first_heading(text: str) -> str:
    m = re.search(r"^#\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return m.group(1).strip() if m else ""


def _read_text_file(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise DocumentError("looks like a binary file, not text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"not valid UTF-8 text ({exc.reason})") from exc


def _html_to_markdown(html: str) -> tuple[str, str]:
    """Turn HTML into Markdown-ish text (headings kept), dropping scripts and styles."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "iframe", "svg"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    blocks: list[str] = []
    body = soup.body or soup
    for el in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote",
                             "td", "dt", "dd"]):
        if el.find_parent(["li", "blockquote", "td"]) is not None and el.name == "p":
            continue
        text = " ".join(el.get_text(" ", strip=True).split())
        if not text:
            continue
        if el.name[0] == "h" and el.name[1:].isdigit():
            blocks.append("#" * int(el.name[1:]) + " " + text)
        elif el.name == "li":
            blocks.append("- " + text)
        else:
            blocks.append(text)
    if not blocks:  # HTML without block elements: fall back to all visible text
        text = " ".join(body.get_text(" ", strip=True).split())
        if text:
            blocks.append(text)
    return "\n\n".join(blocks) + "\n", title


def _pdf_text(path: Path) -> tuple[str, list[int]]:
    """The text, and where each page starts in it."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise DocumentError(f"unreadable PDF ({exc})") from exc
    # Page texts become paragraphs; PDF line breaks inside a paragraph are kept as-is.
    kept = [p.strip() for p in pages]
    text = "\n\n".join(p for p in kept if p) + "\n"
    starts, offset = [], 0
    for p in kept:
        starts.append(offset)
        if p:
            offset += len(p) + 2
    return text, starts


def _kind(path: Path) -> str:
    """The format to read `path` as: its content decides for binary formats (a PDF or a Word
    file with the wrong extension is still read), its extension for text."""
    suffix = path.suffix.lower()
    expected = _SUFFIX_KIND.get(suffix, "")
    sniffed = formats.sniff(path)
    if sniffed.kind in formats.NAMES:
        return sniffed.kind
    if sniffed.kind == "other":  # a binary format we recognise but do not read
        if expected in formats.NAMES:
            raise DocumentError(f"not a valid {formats.NAMES[expected]}: it is "
                                f"{sniffed.detail}")
        raise DocumentError(f"unsupported file: {sniffed.detail}")
    if expected in formats.NAMES and expected != "pdf":  # pypdf says what is wrong with a PDF
        raise DocumentError(f"not a valid {formats.NAMES[expected]}: the file is not a zip "
                            "archive (damaged, or another format under this name)")
    if not expected:
        raise DocumentError(
            f"unsupported file type '{suffix or '(none)'}' "
            f"(supported: {', '.join(sorted(SUPPORTED_SUFFIXES))})"
        )
    return expected


def load_document(path: Path, doc_id: str | None = None) -> SourceDocument:
    """Read one file; raises DocumentError with a clear reason when it cannot be used."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DocumentError(f"cannot read file ({exc.strerror})") from exc
    if size == 0:
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise DocumentError(f"unsupported file type '{path.suffix.lower() or '(none)'}' "
                                f"(supported: {', '.join(sorted(SUPPORTED_SUFFIXES))})")
        raise DocumentError("empty file")
    if size > MAX_FILE_BYTES:
        raise DocumentError(f"file too large ({size} bytes; limit {MAX_FILE_BYTES})")
    pages: list[int] = []
    try:
        kind = _kind(path)
        if kind == "pdf":
            (text, pages), html_title = _pdf_text(path), ""
        elif kind in {"docx", "pptx", "epub"}:
            text, html_title = formats.read(kind, path)
        elif kind == "html":
            text, html_title = _html_to_markdown(_read_text_file(path))
        else:
            text, html_title = _read_text_file(path), ""
    except formats.FormatError as exc:
        raise DocumentError(str(exc)) from exc
    except OSError as exc:
        raise DocumentError(f"cannot read file ({exc.strerror})") from exc
    meta, body_start = split_front_matter(text) if kind == "markdown" else ({}, 0)
    if not text[body_start:].strip():
        raise DocumentError("no text in document")
    title = (
        meta.get("title")
        or html_title
        or (_first_heading(text[body_start:]) if kind not in {"text", "pdf"} else "")
        or path.stem.replace("-", " ").replace("_", " ").strip()
    )
    return SourceDocument(
        id=doc_id or path.name,
        path=path,
        title=title,
        text=text,
        kind=kind,
        metadata=meta,
        body_start=body_start,
        pages=pages,
    )


def _unusable(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop (the link leads back to itself); skipped"
    if path.is_symlink():
        return "broken symlink (its target does not exist); skipped"
    return f"cannot read ({exc.strerror or exc}); skipped"


def skipped_name(name: str) -> bool:
    """Names a folder ingest passes over: hidden files and folders, and the owner files
    ("~$report.docx") Office keeps beside a document while it is open."""
    return name.startswith((".", "~$"))


def discover(root: Path) -> tuple[list[tuple[Path, str]], dict[str, str]]:
    """Files under `root` (or `root` itself) with their document ids, README files skipped,
    and the paths that could not be looked at, with why: a symlink loop, a broken link, a
    folder that cannot be read. Symlinked folders are followed, once per path."""
    problems: dict[str, str] = {}
    try:
        root_stat = root.stat()
    except OSError as exc:
        return [], {str(root): _unusable(root, exc)}
    if not stat.S_ISDIR(root_stat.st_mode):
        return [(root, root.name)], {}
    found: list[tuple[Path, str]] = []

    def walk(folder: Path, rel: PurePosixPath, ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            with os.scandir(folder) as it:
                names = sorted(entry.name for entry in it)
        except OSError as exc:
            problems[str(folder)] = f"cannot read folder ({exc.strerror or exc}); skipped"
            return
        for name in names:
            if skipped_name(name):
                continue
            path = folder / name
            try:
                st = path.stat()  # follows symlinks
            except OSError as exc:
                problems[str(path)] = _unusable(path, exc)
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    problems[str(path)] = "symlink loop (a link to a folder that holds it); " \
                                          "skipped"
                    continue
                walk(path, rel / name, ancestors | {key})
            elif not stat.S_ISREG(st.st_mode):
                problems[str(path)] = "not a regular file; skipped"
            elif name.lower() not in {"readme.md", "sources.md"}:  # folder documentation
                found.append((path, (rel / name).as_posix()))

    walk(root, PurePosixPath(), frozenset({(root_stat.st_dev, root_stat.st_ino)}))
    return found, problems
