"""Ingestion: files -> documents -> chunks -> embeddings -> a new index generation.

Incremental by content hash: a document whose text and chunking settings are unchanged is
not chunked or embedded again; its stored vectors are carried over.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .chunking import CHUNKER_VERSION, Chunk, chunk_document, embedding_text, sentences
from .documents import DocumentError, SourceDocument, discover, load_document
from .embeddings import Embedder
from .store import ChromaIndex, SentenceVectors

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total) embedding progress


@dataclass
class IngestReport:
    documents: int = 0  # documents in the index afterwards
    chunks: int = 0  # chunks in the index afterwards
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # path -> reason
    embedded_chunks: int = 0
    embedded_sentences: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "chunks": self.chunks,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": len(self.unchanged),
            "embedded_chunks": self.embedded_chunks,
            "embedded_sentences": self.embedded_sentences,
            "failures": self.failures,
            "seconds": round(self.seconds, 3),
        }


def _fingerprint(doc: SourceDocument, chunk_chars: int, model: str) -> str:
    return f"{doc.content_hash}:{CHUNKER_VERSION}:{chunk_chars}:{model}"


def ingest(
    index: ChromaIndex,
    embedder: Embedder,
    sources: Iterable[Path],
    *,
    sync: bool = True,
    chunk_chars: int = 900,
    progress: Progress | None = None,
    batch_size: int = 64,
) -> IngestReport:
    """Bring the index up to date with `sources` (files or folders).

    With `sync`, documents that were ingested from one of these folders and whose file is gone
    are removed. Documents from other folders are left alone.
    """
    t0 = time.perf_counter()
    report = IngestReport()
    state = index.state()
    old_manifest: dict[str, dict[str, Any]] = state["manifest"]
    # A new embedding model, or an index from before sentence search: embed everything again.
    rebuild = bool(state["active"]) and (state["embedding_model"] != embedder.name
                                         or not index.has_sentences())
    manifest: dict[str, dict[str, Any]] = {} if rebuild else dict(old_manifest)

    seen: set[str] = set()
    roots: set[str] = set()
    to_embed: list[SourceDocument] = []
    for source in sources:
        source = Path(source)
        if not source.exists():
            report.failures[str(source)] = "no such file or folder"
            continue
        root = str(source.resolve())
        if source.is_dir():
            roots.add(root)
        for path, doc_id in discover(source):
            try:
                doc = load_document(path, doc_id)
            except DocumentError as exc:
                report.failures[str(path)] = str(exc)
                log.warning("skipped %s: %s", path, exc)
                # A failing file keeps its previous version in the index, if any.
                seen.add(doc_id)
                continue
            seen.add(doc.id)
            fp = _fingerprint(doc, chunk_chars, embedder.name)
            previous = manifest.get(doc.id)
            # (A PDF recorded before page numbers were is read again, once, for them.)
            if previous and previous["fingerprint"] == fp and (
                    not doc.pages or "pages" in previous):
                report.unchanged.append(doc.id)
                continue
            (report.updated if previous else report.added).append(doc.id)
            manifest[doc.id] = {"fingerprint": fp, "path": str(path.resolve()), "root": root,
                                "title": doc.title}
            if doc.pages:  # where each page starts: citations and the document view say it
                manifest[doc.id]["pages"] = doc.pages
            to_embed.append(doc)

    if sync:
        for doc_id, entry in list(manifest.items()):
            if doc_id not in seen and entry.get("root") in roots:
                report.removed.append(doc_id)
                del manifest[doc_id]

    if not (to_embed or report.removed or rebuild):
        # Nothing changed: no write at all, so an unchanged re-ingest is nearly free.
        report.documents = len(old_manifest)
        report.chunks = _count(index)
        report.seconds = time.perf_counter() - t0
        return report

    chunks: list[Chunk] = [c for doc in to_embed for c in chunk_document(doc, chunk_chars)]
    per_doc = Counter(c.document for c in chunks)
    for doc in to_embed:
        manifest[doc.id]["chunks"] = per_doc[doc.id]
    units = [(c, s) for c in chunks for s in sentences(c.text)]
    texts = [embedding_text(c.section, c.text) for c in chunks]
    texts += [s.embedding_text(c.section) for c, s in units]
    vectors = _embed(embedder, texts, batch_size, progress)
    report.embedded_chunks, report.embedded_sentences = len(chunks), len(units)
    changed = {d.id for d in to_embed}
    keep = {d for d in manifest if d not in changed} if not rebuild else set()
    index.write_generation(keep, chunks, vectors[: len(chunks)], manifest, embedder.name,
                           SentenceVectors(units, vectors[len(chunks):]))
    report.documents = len(manifest)
    report.chunks = sum(int(e.get("chunks", 0)) for e in manifest.values())
    report.seconds = time.perf_counter() - t0
    log.info("ingest: %s", report.to_json())
    return report


def _count(index: ChromaIndex) -> int:
    col = index.active_collection()
    return int(col.count()) if col is not None else 0


def _embed(
    embedder: Embedder, texts: list[str], batch_size: int, progress: Progress | None
) -> np.ndarray:
    parts: list[np.ndarray] = []
    for i in range(0, len(texts), batch_size):
        parts.append(embedder.embed(texts[i : i + batch_size]))
        if progress:
            progress(min(i + batch_size, len(texts)), len(texts))
    if not parts:
        return np.zeros((0, getattr(embedder, "dimension", 0)), dtype=np.float32)
    return np.concatenate(parts)
