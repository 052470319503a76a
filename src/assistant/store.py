"""The Chroma index: embedded (PersistentClient) or a Chroma server (HttpClient).

Crash safety: an ingest writes a *new* collection generation and only then flips a pointer
(the metadata of a small pointer collection, updated in one call). Readers follow the
pointer, so a crash mid-ingest leaves the previous generation intact and served; leftovers
of an interrupted ingest are removed by the next one.
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

from .chunking import Chunk

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

    def embeddings(self, ids: list[str]) -> dict[str, np.ndarray]:
        col = self.active_collection(refresh=False)
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
    ) -> str:
        """Build the next generation (kept documents copied, new chunks added), then flip."""
        self.cleanup()  # leftovers of an interrupted ingest
        state = self.state()
        generation = state["generation"] + 1
        name = f"{self.name}-g{generation}-{uuid.uuid4().hex[:12]}"
        new = self.client.create_collection(
            name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
        old = self.active_collection()
        if old is not None and keep_documents:
            # Unchanged documents keep their stored embeddings: nothing is embedded again.
            for doc in sorted(keep_documents):
                got = old.get(where={"document": doc}, include=["documents", "metadatas",
                                                                "embeddings"])
                self._add(new, got["ids"], got["embeddings"], got["documents"], got["metadatas"])
        if new_chunks:
            self._add(
                new,
                [c.id for c in new_chunks],
                new_embeddings,
                [c.text for c in new_chunks],
                [_metadata(c) for c in new_chunks],
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
            if cname.startswith(prefix) and cname != active:
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
