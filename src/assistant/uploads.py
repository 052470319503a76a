"""Document management for operators: upload files into a collection, list a collection's
documents, remove an uploaded one (the HTTP side is server/admin.py).

- Files are checked by their content, not their name: a PDF must start with `%PDF-`; a Word,
  PowerPoint or EPUB file must be a zip whose table of contents says so (formats.sniff);
  anything else must be UTF-8 text (no NUL bytes, next to no control characters). A program,
  an image or another archive is refused, naming what it looks like. The name only chooses
  between Markdown, HTML and plain text for a text file, and a file named `.pdf` must hold a
  PDF.
- An accepted file is stored as `<data dir>/uploads/<collection>/<safe name>`: the original name
  reduced to lowercase ASCII letters, digits, `-` and `_` (no path, no leading dot), with the
  suffix of the type its content has. The document's id is that file name; uploading the same
  name again replaces the document.
- Each collection's uploads folder is ingested as one folder by the ordinary ingest (ingest.py:
  its writer lock, its new generation, its flip), so a removed file leaves the index with the
  next generation, and a file that fails to ingest leaves the index as it was: a new file is
  deleted again, a replaced one is put back.
- Documents ingested from elsewhere (the corpus folder, `assistant ingest PATH`) are listed
  but not removed here: their files are the operator's, and the next `assistant ingest` of
  their folder would bring them back. Remove the file and run `assistant ingest`.

One process manages a collection's uploads at a time (a lock per collection in this process;
the index itself is guarded by the ingest's writer lock, across processes).
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from . import formats
from .catalog import DEFAULT, CollectionError, valid_name

log = logging.getLogger(__name__)

SNIFF_BYTES = 8192
COPY_BYTES = 1 << 20
MAX_CONTROL_RATIO = 0.001  # control characters (other than tab, newlines, form feed) in text
UPLOADS = "uploads"
STAGING = ".incoming-"  # hidden names: discover() skips them, so no ingest reads them
PREVIOUS = ".previous-"
RESERVED = {"readme.md", "sources.md"}  # discover() takes these for folder documentation

# What a file that is neither a PDF nor text looks like, by its first bytes.
MAGIC: list[tuple[bytes, str]] = [
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a Linux program"),
    (b"\xcf\xfa\xed\xfe", "a macOS program"),
    (b"PK\x03\x04", "a ZIP archive (or a Word, Excel or OpenDocument file)"),
    (b"\xd0\xcf\x11\xe0", "an old Office document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP image, WAV or AVI)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ", "an xz archive"),
    (b"7z\xbc\xaf", "a 7z archive"),
    (b"Rar!", "a RAR archive"),
    (b"%!PS", "a PostScript file"),
    (b"{\\rtf", "an RTF document"),
]
SUFFIX = {"pdf": ".pdf", "markdown": ".md", "html": ".html", "text": ".txt", "docx": ".docx",
          "pptx": ".pptx", "epub": ".epub"}
TYPE_NAMES = {".pdf": "pdf", ".md": "markdown", ".markdown": "markdown", ".html": "html",
              ".htm": "html", ".txt": "text", ".docx": "docx", ".pptx": "pptx", ".epub": "epub"}


class Rejected(Exception):
    """A file refused before it reached the index; the message says why."""


class DocumentNotFound(LookupError):
    pass


class NotRemovable(Exception):
    """A document that was not uploaded (its file is the operator's)."""


def sniff(head: bytes, read_all: Callable[[], bytes], filename: str,
          path: Path | None = None) -> str:
    """The kind of a file ("pdf", "docx", "pptx", "epub", "markdown", "html", "text") from
    its content; Rejected when it is none of them. `head` is its first bytes, `read_all`
    reads the whole file (text is checked to the end), `path` is where it is staged (a zip
    is recognised by its table of contents)."""
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if head.lstrip(b"\xef\xbb\xbf\r\n\t ").startswith(b"%PDF-"):
        return "pdf"
    if path is not None and head.startswith((*formats.ZIP_MAGIC, formats.OLE_MAGIC)):
        found = formats.sniff(path)
        if found.kind in formats.NAMES:
            return found.kind
        raise Rejected(f"not a document this assistant reads: {found.detail}")
    if suffix == ".pdf":
        raise Rejected("not a PDF: the file is named .pdf but does not start with %PDF-"
                       + _looks_like(head))
    text = _text(head, read_all)
    if text is None:
        raise Rejected("not a document this assistant reads (a PDF, a Word, PowerPoint or EPUB "
                       "file, or UTF-8 text: Markdown, HTML or plain text)"
                       + _looks_like(head, binary=True))
    start = text.lstrip("\ufeff \t\r\n")[:200].lower()
    if suffix in (".html", ".htm") or start.startswith(("<!doctype html", "<html")):
        return "html"
    if suffix in (".md", ".markdown"):
        return "markdown"
    return "text"


def _looks_like(head: bytes, binary: bool = False) -> str:
    for magic, what in MAGIC:
        if head.startswith(magic):
            return f"; it looks like {what}"
    return "; it holds binary data" if binary else ""


def _text(head: bytes, read_all: Callable[[], bytes]) -> str | None:
    if b"\x00" in head:
        return None
    try:
        text = read_all().decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in text:
        return None
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f")
    if controls > MAX_CONTROL_RATIO * max(len(text), 1):
        return None
    return text


def safe_name(original: str, kind: str) -> str:
    """A file name made from `original`'s base name (no folders, no leading dot, lowercase
    ASCII letters, digits, '-' and '_') with the suffix of `kind`."""
    base = original.replace("\\", "/").rsplit("/", 1)[-1]
    stem = PurePosixPath(base.lstrip(".")).stem if "." in base.lstrip(".") else base
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_.")[:80].strip("-_")
    name = (stem or "document") + SUFFIX[kind]
    if name in RESERVED:
        name = "doc-" + name
    return name


@dataclass
class Incoming:
    """One uploaded file: the name the client gave and its content."""

    filename: str
    file: IO[bytes]


def _iso(seconds: Any) -> str | None:
    if not isinstance(seconds, int | float):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class DocumentManager:
    """Uploads, listings and removals for the collections of one `Assistant`."""

    def __init__(self, assistant: Any, data_dir: Path, corpus_dir: Path) -> None:
        self.assistant = assistant
        self.root = Path(data_dir) / UPLOADS
        self.corpus_dir = Path(corpus_dir)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.progress: dict[str, dict[str, Any]] = {}  # collection -> the ingest under way

    def folder(self, collection: str) -> Path:
        return self.root / valid_name(collection)

    def _lock(self, collection: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(collection, threading.Lock())

    def _clear_leftovers(self, folder: Path) -> None:
        """Hidden files an interrupted upload left (never ingested: discover() skips them)."""
        if not folder.is_dir():
            return
        for path in folder.iterdir():
            if path.name.startswith((STAGING, PREVIOUS)):
                log.warning("removing %s, left by an interrupted upload", path)
                path.unlink(missing_ok=True)

    # -- listing ---------------------------------------------------------------------------
    def source_of(self, collection: str, entry: dict[str, Any]) -> str:
        root = str(entry.get("root", ""))
        if root == str(self.folder(collection).resolve()):
            return "upload"
        if collection == DEFAULT and root == str(self.corpus_dir.resolve()):
            return "corpus"
        return "ingest"

    def documents(self, collection: str) -> list[dict[str, Any]]:
        """The collection's documents as the served index holds them, by id."""
        manifest = self.assistant.manifest(collection)
        out = []
        for doc_id, entry in sorted(manifest.items()):
            kind = entry.get("kind") or TYPE_NAMES.get(PurePosixPath(doc_id).suffix.lower(), "")
            source = self.source_of(collection, entry)
            out.append({
                "id": doc_id,
                "title": entry.get("title") or doc_id,
                "type": kind,
                "chunks": entry.get("chunks"),
                "pages": len(entry["pages"]) if entry.get("pages") else None,
                "ingested": _iso(entry.get("ingested")),
                "source": source,
                "removable": source == "upload",
            })
        return out

    # -- uploading -------------------------------------------------------------------------
    def add(self, collection: str, files: Iterable[Incoming], *, create: bool = False
            ) -> dict[str, Any]:
        """Check, store and ingest `files` into `collection` (created when new only with
        `create`). Returns {"collection", "files": [per file: "file", "status" (added,
        updated, unchanged, rejected, failed), "document", "error"], "documents", "chunks"}.
        CollectionError for a collection that does not exist; StoreError (IngestBusy) when
        the index cannot be written: then nothing is changed."""
        valid_name(collection)
        if not create and not self.assistant.has_collection(collection):
            raise CollectionError(f"Unknown collection {collection!r}; send create=true to "
                                  "make a new one.", 404)
        folder = self.folder(collection)
        with self._lock(collection):
            self.progress[collection] = {"phase": "checking", "done": 0, "total": 0}
            try:
                return self._add(collection, folder, list(files))
            finally:
                self.progress.pop(collection, None)

    def _add(self, collection: str, folder: Path, files: list[Incoming]) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        self._clear_leftovers(folder)
        results: list[dict[str, Any]] = []
        staged: list[tuple[dict[str, Any], Path, str]] = []  # (result, staging file, name)
        try:
            for f in files:
                result: dict[str, Any] = {"file": f.filename, "status": "", "document": None,
                                          "error": None}
                results.append(result)
                staging = folder / f"{STAGING}{uuid.uuid4().hex}"
                try:
                    kind = self._stage(f, staging)
                except Rejected as exc:
                    staging.unlink(missing_ok=True)
                    result.update(status="rejected", error=str(exc))
                    continue
                staged.append((result, staging, safe_name(f.filename, kind)))
            if not staged:  # nothing to ingest: a new collection is not made
                return self._summary(collection, results,
                                     exists=self.assistant.has_collection(collection))
            self.assistant.space(collection, create=True)
            manifest = self.assistant.manifest(collection)
            placed = self._place(collection, folder, staged, manifest)
        finally:
            for _, staging, _ in staged:
                staging.unlink(missing_ok=True)
        if placed:
            self._ingest(collection, folder, placed)
        return self._summary(collection, results)

    def _stage(self, f: Incoming, staging: Path) -> str:
        """Copy an upload into its hidden staging file and return its kind (Rejected when
        its content is no document)."""
        f.file.seek(0)
        with staging.open("wb") as out:
            shutil.copyfileobj(f.file, out, COPY_BYTES)
        with staging.open("rb") as src:
            head = src.read(SNIFF_BYTES)
        if not head:
            raise Rejected("empty file")
        return sniff(head, staging.read_bytes, f.filename, staging)

    def _place(self, collection: str, folder: Path,
               staged: list[tuple[dict[str, Any], Path, str]], manifest: dict[str, Any]
               ) -> list[tuple[dict[str, Any], Path, Path | None]]:
        """Move staged files to their names (a file of the same name is kept aside, hidden,
        until the ingest has taken the new one). Returns (result, file, previous file)."""
        placed: list[tuple[dict[str, Any], Path, Path | None]] = []
        taken: set[str] = set()
        for result, staging, name in staged:
            stem, suffix = name[: -len(PurePosixPath(name).suffix)], PurePosixPath(name).suffix
            n = 2
            while name in taken:  # two files of one request with the same name
                name = f"{stem}-{n}{suffix}"
                n += 1
            taken.add(name)
            entry = manifest.get(name)
            if entry is not None and self.source_of(collection, entry) != "upload":
                result.update(status="rejected", error=(
                    f"a document named {name} that was not uploaded is already in the "
                    f"collection {collection!r}; rename the file"))
                continue
            target = folder / name
            previous = None
            if target.exists():
                previous = folder / f"{PREVIOUS}{uuid.uuid4().hex}-{name}"
                target.replace(previous)
            staging.replace(target)
            result["document"] = name
            placed.append((result, target, previous))
        return placed

    def _ingest(self, collection: str, folder: Path,
                placed: list[tuple[dict[str, Any], Path, Path | None]]) -> None:
        progress = self.progress.setdefault(collection, {})
        progress.update(phase="reading", done=0, total=0)

        def step(done: int, total: int) -> None:
            progress.update(phase="embedding", done=done, total=total)

        try:
            report = self.assistant.ingest([folder], sync=True, progress=step,
                                           collection=collection)
        except BaseException:
            # The index is unchanged (an ingest changes it only with its flip): so are the files.
            for _, target, previous in placed:
                target.unlink(missing_ok=True)
                if previous is not None:
                    previous.replace(target)
            raise
        for result, target, previous in placed:
            name = target.name
            error = report.failures.get(str(target))
            if error is not None:
                target.unlink(missing_ok=True)
                if previous is not None:
                    previous.replace(target)  # the index still holds this version
                result.update(status="failed", error=error)
                continue
            if previous is not None:
                previous.unlink(missing_ok=True)
            status = ("added" if name in report.added else "updated" if name in report.updated
                      else "unchanged")
            result["status"] = status

    def _summary(self, collection: str, results: list[dict[str, Any]], exists: bool = True
                 ) -> dict[str, Any]:
        manifest = self.assistant.manifest(collection) if exists else {}
        return {
            "collection": collection,
            "files": results,
            "documents": len(manifest),
            "chunks": sum(int(e.get("chunks", 0)) for e in manifest.values()),
        }

    # -- removing --------------------------------------------------------------------------
    def remove(self, collection: str, doc_id: str) -> dict[str, Any]:
        """Remove an uploaded document: its file, and (with a new generation) its passages.
        DocumentNotFound, NotRemovable (not uploaded), CollectionError, StoreError."""
        folder = self.folder(collection)
        with self._lock(collection):
            entry = self.assistant.manifest(collection).get(doc_id)
            if entry is None:
                raise DocumentNotFound(f"No document {doc_id!r} in the collection "
                                       f"{collection!r}.")
            source = self.source_of(collection, entry)
            if source != "upload":
                where = "the corpus folder" if source == "corpus" else "a file or folder " \
                    "given to `assistant ingest`"
                raise NotRemovable(
                    f"{doc_id!r} was not uploaded: it comes from {where}. Remove its file "
                    "there and run `assistant ingest` again.")
            target = folder / doc_id
            if target.parent.resolve() != folder.resolve() or doc_id.startswith("."):
                raise DocumentNotFound(f"No uploaded document {doc_id!r}.")
            self._clear_leftovers(folder)
            aside = folder / f"{PREVIOUS}{uuid.uuid4().hex}-{doc_id}"
            if target.exists():
                target.replace(aside)
            self.progress[collection] = {"phase": "removing", "done": 0, "total": 0}
            try:
                report = self.assistant.ingest([folder], sync=True, collection=collection)
            except BaseException:
                if aside.exists():
                    aside.replace(target)
                raise
            finally:
                self.progress.pop(collection, None)
            aside.unlink(missing_ok=True)
        return {"collection": collection, "removed": doc_id in report.removed,
                "document": doc_id, "documents": report.documents, "chunks": report.chunks}
