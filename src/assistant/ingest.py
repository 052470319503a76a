"""Ingestion: files -> documents -> chunks -> embeddings -> a new index generation.

Incremental by content hash: a document whose text and chunking settings are unchanged is
not chunked or embedded again; its stored vectors are carried over.

One writer at a time: the ingest holds the index's writer lock (locking.py) from reading the
index state to the flip, waiting up to `lock_wait_s` for another ingest to finish.

Texts are embedded and written to the new generation in batches of `batch_size`, so memory
stays bounded however large a document is, and an interrupted ingest is resumed by the next
one: what the unfinished generation already holds is not embedded again.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chunking import CHUNKER_VERSION, Chunk, Sentence, chunk_document, embedding_text, sentences
from .documents import DocumentError, SourceDocument, discover, load_document
from .embeddings import Embedder
from .store import ChromaIndex, GenerationBuilder, sentence_id

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total) embedding progress
Notify = Callable[[str], None]  # a message for the person waiting (CLI: printed to stderr)

WARM_UP_TEXTS = 8  # the first batch (the model's first call is slow) is not timed
# The second batch measures the embedding rate. 32 texts overestimated the whole job about
# twice (padding and per-call costs weigh more in a small batch: estimate/actual 2.04 and 1.93
# on a 400-chunk corpus, 1.40 on 5,000 chunks); 128 gave 0.99 and 1.25 (eval/reports/bench.md).
CALIBRATION_TEXTS = 128
LONG_JOB_S = 60.0  # estimates above this are announced before the work goes on


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
    # texts not embedded again: an interrupted ingest had written them, or a changed
    # document still holds them word for word
    reused: int = 0
    estimate_s: float = 0.0  # the estimated embedding time, from the measured rate
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
            "reused": self.reused,
            "estimate_s": round(self.estimate_s, 1),
            "failures": self.failures,
            "seconds": round(self.seconds, 3),
        }


def _fingerprint(doc: SourceDocument, chunk_chars: int, model: str) -> str:
    return f"{doc.content_hash}:{CHUNKER_VERSION}:{chunk_chars}:{model}"


def _load(sources: Iterable[Path], report: IngestReport
          ) -> tuple[list[tuple[SourceDocument, str]], set[str], set[str]]:
    """Read every file: ((document, the source it came from), ids seen, folder roots).
    Failures go to the report once (the CLI prints them; the log records them at info
    level, so they are not printed twice)."""
    docs: list[tuple[SourceDocument, str]] = []
    seen: set[str] = set()
    roots: set[str] = set()
    for source in sources:
        source = Path(source)
        if not source.exists() and not source.is_symlink():
            report.failures[str(source)] = "no such file or folder"
            continue
        found, problems = discover(source)
        report.failures.update(problems)
        root = str(source.resolve())
        if source.is_dir():
            roots.add(root)
        for path, doc_id in found:
            try:
                doc = load_document(path, doc_id)
            except DocumentError as exc:
                report.failures[str(path)] = str(exc)
                log.info("skipped %s: %s", path, exc)
                # A failing file keeps its previous version in the index, if any.
                seen.add(doc_id)
                continue
            seen.add(doc.id)
            docs.append((doc, root))
    return docs, seen, roots


def ingest(
    index: ChromaIndex,
    embedder: Embedder,
    sources: Iterable[Path],
    *,
    sync: bool = True,
    chunk_chars: int = 900,
    progress: Progress | None = None,
    batch_size: int = 256,
    lock_wait_s: float = 300.0,
    notify: Notify | None = None,
) -> IngestReport:
    """Bring the index up to date with `sources` (files or folders).

    With `sync`, documents that were ingested from one of these folders and whose file is gone
    are removed. Documents from other folders are left alone. Raises locking.IngestBusy when
    another ingest holds the index for longer than `lock_wait_s`.
    """
    t0 = time.perf_counter()
    report = IngestReport()
    with index.writing(lock_wait_s, notify) as lock:
        # Read the files once the lock is ours: after a wait they may have changed.
        docs, seen, roots = _load(sources, report)
        _update(index, embedder, docs, seen, roots, report, sync=sync, chunk_chars=chunk_chars,
                progress=progress, batch_size=batch_size, notify=notify, check=lock.check)
    report.seconds = time.perf_counter() - t0
    log.info("ingest: %s", report.to_json())
    return report


def _update(index: ChromaIndex, embedder: Embedder, docs: list[tuple[SourceDocument, str]],
            seen: set[str], roots: set[str], report: IngestReport, *, sync: bool, chunk_chars: int,
            progress: Progress | None, batch_size: int, notify: Notify | None,
            check: Callable[[], None]) -> None:
    state = index.state()
    old_manifest: dict[str, dict[str, Any]] = state["manifest"]
    # A new embedding model, or an index from before sentence search: embed everything again.
    rebuild = bool(state["active"]) and (state["embedding_model"] != embedder.name
                                         or not index.has_sentences())
    manifest: dict[str, dict[str, Any]] = {} if rebuild else dict(old_manifest)

    to_embed: list[SourceDocument] = []
    for doc, root in docs:
        fp = _fingerprint(doc, chunk_chars, embedder.name)
        previous = manifest.get(doc.id)
        # (A PDF recorded before page numbers were is read again, once, for them.)
        if previous and previous["fingerprint"] == fp and (not doc.pages or "pages" in previous):
            report.unchanged.append(doc.id)
            continue
        (report.updated if previous else report.added).append(doc.id)
        manifest[doc.id] = {"fingerprint": fp, "path": str(doc.path.resolve()),
                            "root": root, "title": doc.title}
        manifest[doc.id].update(kind=doc.kind, ingested=round(time.time()))  # for listings
        if doc.pages:  # where each page starts: citations and the document view say it
            manifest[doc.id]["pages"] = doc.pages
        to_embed.append(doc)

    if sync:
        for doc_id, entry in list(manifest.items()):
            if doc_id not in seen and entry.get("root") in roots:
                report.removed.append(doc_id)
                del manifest[doc_id]

    if not (to_embed or report.removed or rebuild):
        # Nothing changed: no write at all, so an unchanged re-ingest is nearly free (an
        # index from before keyword indexes were kept on disk gets its own, once).
        if state["active"]:
            index.ensure_keyword_index(state["active"])
        report.documents = len(old_manifest)
        report.chunks = index.count()
        return

    builder = index.begin_generation(embedder.name)
    changed = {d.id for d in to_embed}
    keep = {d for d in manifest if d not in changed} if not rebuild else set()
    builder.copy_documents(keep)

    chunks: list[Chunk] = []
    per_doc: Counter[str] = Counter()
    for doc in to_embed:
        doc_chunks = chunk_document(doc, chunk_chars)
        per_doc[doc.id] = len(doc_chunks)
        chunks.extend(doc_chunks)
    for doc in to_embed:
        manifest[doc.id]["chunks"] = per_doc[doc.id]
    if not rebuild:  # what a changed document still holds word for word keeps its vectors
        builder.carry_over(chunks, [sentence_id(c.id, s.start, s.end)
                                    for c in chunks for s in sentences(c.text)])
    _embed_into(builder, embedder, chunks, report, batch_size, progress, notify)
    check()  # still the only writer: otherwise stop before the flip
    builder.commit(manifest, embedder.name, getattr(embedder, "backend", ""))
    report.documents = len(manifest)
    report.chunks = sum(int(e.get("chunks", 0)) for e in manifest.values())


Item = tuple[Chunk, Sentence | None, str]  # (chunk, sentence or None for the chunk, text)


def _embed_into(builder: GenerationBuilder, embedder: Embedder, chunks: list[Chunk],
                report: IngestReport, batch_size: int, progress: Progress | None,
                notify: Notify | None) -> None:
    """Embed what the generation does not hold yet, batch by batch, writing each batch as it
    comes (chunks and their sentences stay together, in document order)."""
    held_chunks = builder.reuse_chunks(chunks)
    items: list[Item] = []
    reused = len(held_chunks)
    for c in chunks:
        if c.id not in held_chunks:
            items.append((c, None, embedding_text(c.section, c.text)))
        units = sentences(c.text)
        held = builder.reuse_sentences([sentence_id(c.id, s.start, s.end) for s in units])
        reused += len(held)
        items += [(c, s, s.embedding_text(c.section)) for s in units
                  if sentence_id(c.id, s.start, s.end) not in held]
    report.reused = reused
    total = len(items)
    if reused:
        log.info("%d texts already embedded (unchanged text of a changed document, or an "
                 "interrupted ingest's)", reused)
    total_chars = sum(len(t) for _, _, t in items)
    done = 0
    if progress and total:
        progress(0, total)
    sizes = [WARM_UP_TEXTS, CALIBRATION_TEXTS]  # then batch_size
    while done < total:
        calibrating = len(sizes) == 1
        batch = items[done : done + min(batch_size, sizes.pop(0) if sizes else batch_size)]
        started = time.perf_counter()
        vectors = embedder.embed([t for _, _, t in batch])
        new_chunks = [(c, v) for (c, s, _), v in zip(batch, vectors, strict=True) if s is None]
        new_units = [((c, s), v) for (c, s, _), v in zip(batch, vectors, strict=True)
                     if s is not None]
        builder.add_chunks([c for c, _ in new_chunks], [v for _, v in new_chunks])
        builder.add_sentences([u for u, _ in new_units], [v for _, v in new_units])
        report.embedded_chunks += len(new_chunks)
        report.embedded_sentences += len(new_units)
        done += len(batch)
        if calibrating and done < total:
            _estimate(report, time.perf_counter() - started, sum(len(t) for _, _, t in batch),
                      total_chars, items, notify)
        if progress:
            progress(done, total)


def _estimate(report: IngestReport, seconds: float, done_chars: int, total_chars: int,
              items: list[Item], notify: Notify | None) -> None:
    """From one batch's rate (characters embedded and written per second), the time the
    whole job takes."""
    rate = done_chars / max(seconds, 1e-6)
    report.estimate_s = total_chars / rate
    n_chunks = sum(s is None for _, s, _ in items)
    message = (f"{n_chunks} chunks and {len(items) - n_chunks} sentences to embed, "
               f"estimated {report.estimate_s / 60:.1f} minutes (measured "
               f"{rate:.0f} characters/s)")
    log.info(message)
    if report.estimate_s > LONG_JOB_S and notify is not None:
        notify(f"this is a long job: {message}; an interrupted ingest resumes where it "
               "stopped")
