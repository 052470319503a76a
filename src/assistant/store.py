"""The Chroma index: embedded (PersistentClient) or a Chroma server (HttpClient).

Crash safety: an ingest writes a *new* collection generation and only then flips a pointer
(the metadata of a small pointer collection, updated in one call). Readers follow the
pointer, so a crash mid-ingest leaves the previous generation intact and served; leftovers
of an interrupted ingest are removed by the next one.

Each generation is two collections: its chunks, and beside them ("<name>-sentences") one
vector per sentence of each chunk, for sentence search (a chunk's vector averages its
sentences, so a paraphrase of one of them can rank it low) and for the extractive scorer.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from .chunking import Chunk, Sentence

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The index cannot be reached or read."""


@dataclass(frozen=True)
class StoredChunk:
    chunk: Chunk
    embedding: np.ndarray | None = None


def _client(data_dir: Path, chroma_url: str) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if chroma_url:
        url = urlparse(chroma_url)
        if not url.hostname:
            raise StoreError(f"invalid Chroma server URL: {chroma_url!r}")
        try:
            return chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
        except Exception as exc:  # chromadb raises plain ValueError/ConnectionError here
            raise StoreError(f"cannot reach the Chroma server at {chroma_url}: {exc}") from exc
    path = data_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def _metadata(c: Chunk) -> dict[str, Any]:
    # Plain keys: llama-index's ChromaVectorStore reads these too (legacy node format),
    # which lets the baselines query the very same collection.
    return {
        "document": c.document,
        "title": c.title,
        "section": c.section,
        "start": c.start,
        "end": c.end,
        "document_id": c.document,
    }


SENTENCES = "-sentences"  # suffix of a generation's sentence collection
MIN_SEARCH_CHARS = 16  # shorter sentences ("Read more.") match too much to lead a search


@dataclass(frozen=True)
class SentenceVectors:
    """Sentences of new chunks with their vectors, to be written beside the chunks."""

    units: list[tuple[Chunk, Sentence]]
    embeddings: np.ndarray


def sentence_id(chunk_id: str, start: int, end: int) -> str:
    return f"{chunk_id}:{start}:{end}"


def parse_sentence_id(id_: str) -> tuple[str, int, int]:
    """The chunk id and offsets a `sentence_id` was made from."""
    chunk, start, end = id_.rsplit(":", 2)
    return chunk, int(start), int(end)


def _chunk(id_: str, text: str, meta: dict[str, Any]) -> Chunk:
    return Chunk(
        id=id_,
        document=str(meta.get("document", "")),
        title=str(meta.get("title", "")),
        section=str(meta.get("section", "")),
        text=text,
        start=int(meta.get("start", 0)),
        end=int(meta.get("end", 0)),
    )


class ChromaIndex:
    """Generations of one logical index, behind a pointer collection."""

    def __init__(self, data_dir: Path, chroma_url: str = "", name: str = "assistant") -> None:
        self.name = name
        self.location = chroma_url or str(data_dir / "chroma")
        self.client = _client(data_dir, chroma_url)
        self._cached: Any | None = None
        self._cached_sentences: tuple[str, Any | None] | None = None
        try:
            self._pointer = self.client.get_or_create_collection(
                f"{name}-pointer", embedding_function=None
            )
        except Exception as exc:
            raise StoreError(f"cannot open the Chroma index at {self.location}: {exc}") from exc

    # -- pointer ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """{'active': collection name or '', 'manifest': {doc_id: {...}}, 'generation': int}."""
        try:
            meta = self.client.get_collection(f"{self.name}-pointer").metadata or {}
        except Exception as exc:
            raise StoreError(f"cannot read the Chroma index at {self.location}: {exc}") from exc
        return {
            "active": meta.get("active", ""),
            "generation": int(meta.get("generation", 0)),
            "manifest": json.loads(meta.get("manifest", "{}")),
            "embedding_model": meta.get("embedding_model", ""),
        }

    def active_collection(self, refresh: bool = True) -> Any | None:
        """The served collection; with refresh=False, the one seen at the last check."""
        active = self.state()["active"] if refresh or self._cached is None else self._cached.name
        if not active:
            return None
        if self._cached is None or self._cached.name != active:
            self._cached = self.client.get_collection(active, embedding_function=None)
        return self._cached

    def sentence_collection(self, refresh: bool = True) -> Any | None:
        """The served generation's sentence collection; None for an index built before
        sentence search (the next ingest rebuilds it). refresh=False trusts the last look."""
        col = self.active_collection(refresh)
        if col is None:
            return None
        name = col.name + SENTENCES
        if refresh or self._cached_sentences is None or self._cached_sentences[0] != name:
            try:
                found = self.client.get_collection(name, embedding_function=None)
            except Exception:  # chromadb raises NotFoundError (or ValueError in older ones)
                found = None
            self._cached_sentences = (name, found)
        return self._cached_sentences[1]

    def has_sentences(self) -> bool:
        return self.active_collection() is not None and self.sentence_collection() is not None

    # -- reading ---------------------------------------------------------------------------
    def all_chunks(self) -> list[Chunk]:
        col = self.active_collection()
        if col is None:
            return []
        got = col.get(include=["documents", "metadatas"])
        return [
            _chunk(i, t or "", m or {})
            for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        ]

    def document_chunks(self, document: str) -> list[Chunk]:
        """The chunks of one document in the served generation, in document order."""
        col = self.active_collection()
        if col is None:
            return []
        got = col.get(where={"document": document}, include=["documents", "metadatas"])
        chunks = [_chunk(i, t or "", m or {})
                  for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)]
        return sorted(chunks, key=lambda c: c.start)

    def query(self, embedding: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the k nearest chunks."""
        col = self.active_collection(refresh=False)
        if col is None or k <= 0:
            return []
        n = min(k, col.count())
        if n == 0:
            return []
        res = col.query(query_embeddings=[embedding.tolist()], n_results=n, include=["distances"])
        pairs = zip(res["ids"][0], res["distances"][0], strict=True)
        return [(i, 1.0 - float(d)) for i, d in pairs]

    def query_sentences(self, embedding: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(chunk id, similarity of its best sentence) of the k chunks whose sentences are
        nearest, best first."""
        col = self.sentence_collection(refresh=False)  # retrieve() has just refreshed
        if col is None or k <= 0:
            return []
        n = min(3 * k, col.count())  # several of the nearest sentences share a chunk
        if n == 0:
            return []
        # Ids only: a metadata filter or fetching metadata makes the query several times
        # slower, and the id says the chunk and the sentence's length.
        res = col.query(query_embeddings=[embedding.tolist()], n_results=n,
                        include=["distances"])
        best: dict[str, float] = {}
        for id_, d in zip(res["ids"][0], res["distances"][0], strict=True):
            chunk, start, end = parse_sentence_id(id_)
            if end - start >= MIN_SEARCH_CHARS:
                best.setdefault(chunk, 1.0 - float(d))
        return list(best.items())[:k]

    def sentence_embeddings(self, ids: list[str]) -> dict[str, np.ndarray]:
        """Stored vectors of sentences (ids from sentence_id), where there are any."""
        try:
            return self._vectors(self.sentence_collection(refresh=False), ids)
        except Exception as exc:  # e.g. the generation was replaced: the caller embeds them
            log.debug("stored sentence vectors unavailable: %s", exc)
            return {}

    def embeddings(self, ids: list[str]) -> dict[str, np.ndarray]:
        return self._vectors(self.active_collection(refresh=False), ids)

    @staticmethod
    def _vectors(col: Any | None, ids: list[str]) -> dict[str, np.ndarray]:
        if col is None or not ids:
            return {}
        got = col.get(ids=ids, include=["embeddings"])
        return {
            i: np.asarray(e, dtype=np.float32)
            for i, e in zip(got["ids"], got["embeddings"], strict=True)
        }

    # -- writing ---------------------------------------------------------------------------
    def write_generation(
        self,
        keep_documents: set[str],
        new_chunks: list[Chunk],
        new_embeddings: np.ndarray,
        manifest: dict[str, Any],
        embedding_model: str,
        new_sentences: SentenceVectors | None = None,
    ) -> str:
        """Build the next generation (kept documents copied, new chunks and their sentences
        added), then flip."""
        self.cleanup()  # leftovers of an interrupted ingest
        state = self.state()
        generation = state["generation"] + 1
        name = f"{self.name}-g{generation}-{uuid.uuid4().hex[:12]}"
        new = self.client.create_collection(
            name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
        new_sent = self.client.create_collection(
            name + SENTENCES, configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )
        old = self.active_collection()
        old_sent = self.sentence_collection(refresh=False) if old is not None else None
        if old is not None and keep_documents:
            # Unchanged documents keep their stored embeddings: nothing is embedded again.
            for doc in sorted(keep_documents):
                for src, dst in ((old, new), (old_sent, new_sent)):
                    if src is None:
                        continue
                    got = src.get(where={"document": doc},
                                  include=["documents", "metadatas", "embeddings"])
                    self._add(dst, got["ids"], got["embeddings"], got["documents"],
                              got["metadatas"])
        if new_chunks:
            self._add(
                new,
                [c.id for c in new_chunks],
                new_embeddings,
                [c.text for c in new_chunks],
                [_metadata(c) for c in new_chunks],
            )
        if new_sentences is not None and new_sentences.units:
            units = new_sentences.units
            self._add(
                new_sent,
                [sentence_id(c.id, s.start, s.end) for c, s in units],
                new_sentences.embeddings,
                [s.text for _, s in units],
                # The id holds the chunk and the offsets; the document lets a later ingest
                # carry the sentences of an unchanged document over.
                [{"document": c.document} for c, _ in units],
            )
        # The flip: one metadata update makes the new generation the served one.
        self._pointer.modify(
            metadata={
                "active": name,
                "generation": generation,
                "manifest": json.dumps(manifest, sort_keys=True),
                "embedding_model": embedding_model,
                "updated": time.time(),
            }
        )
        self.cleanup()
        return name

    @staticmethod
    def _add(col: Any, ids: Any, embeddings: Any, documents: Any, metadatas: Any) -> None:
        batch = 2000  # below Chroma's max batch size
        for i in range(0, len(ids), batch):
            col.add(
                ids=list(ids[i : i + batch]),
                embeddings=[list(map(float, e)) for e in embeddings[i : i + batch]],
                documents=list(documents[i : i + batch]),
                metadatas=list(metadatas[i : i + batch]),
            )

    def cleanup(self) -> None:
        """Drop generations that are not active (older ones and interrupted ingests)."""
        active = self.state()["active"]
        prefix = f"{self.name}-g"
        for col in self.client.list_collections():
            cname = col if isinstance(col, str) else col.name
            if cname.startswith(prefix) and cname not in (active, active + SENTENCES):
                try:
                    self.client.delete_collection(cname)
                except Exception as exc:  # another process may be deleting it too
                    log.warning("could not delete old collection %s: %s", cname, exc)

    def reset(self) -> None:
        for col in self.client.list_collections():
            cname = col if isinstance(col, str) else col.name
            if cname.startswith(f"{self.name}-"):
                self.client.delete_collection(cname)
        self._pointer = self.client.get_or_create_collection(
            f"{self.name}-pointer", embedding_function=None
        )
