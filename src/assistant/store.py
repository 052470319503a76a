"""The Chroma index: embedded (PersistentClient) or a Chroma server (HttpClient).

Crash safety: an ingest writes a *new* collection generation and only then flips a pointer
(the metadata of a small pointer collection, updated in one call). Readers follow the
pointer, so a crash mid-ingest leaves the previous generation intact and served. The next
ingest resumes an unfinished generation: what it already holds (ids are content hashes) is
not embedded again.

Each generation is two collections: its chunks, and beside them ("<name>-sentences") one
vector per sentence of each chunk, for sentence search (a chunk's vector averages its
sentences, so a paraphrase of one of them can rank it low) and for the extractive scorer.

Each generation also has a keyword (BM25) index on local disk, `<data_dir>/keyword/<name>/
<generation>` (keyword.py): the ingest builds it before the flip, cleanup removes it with its
generation, and a reader that finds none (an index from an earlier version, or a Chroma server
another machine wrote) builds it once from the generation's chunks.

Writers are serialized by `writer_lock()` (locking.py). Every call to a Chroma server has a
timeout; a server that does not answer, or cannot be reached, raises `StoreError` naming
its URL and the cause.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlparse

import numpy as np

from .chunking import Chunk, Sentence

if TYPE_CHECKING:
    from .locking import Notify, WriterLock

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0


class StoreError(RuntimeError):
    """The index cannot be reached or read. `location` is the server URL or the folder."""

    def __init__(self, message: str, *, location: str = "", cause: str = "") -> None:
        super().__init__(message)
        self.location = location
        self.cause = cause


@dataclass(frozen=True)
class StoredChunk:
    chunk: Chunk
    embedding: np.ndarray | None = None


def is_unreachable(exc: BaseException) -> bool:
    """A failure to talk to the server at all (down, stalled, connection cut)."""
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in (502, 503, 504)
    return isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError)


def _cause(exc: BaseException, timeout_s: float) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return f"no answer within {timeout_s:g} s ({type(exc).__name__})"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _http_client(chroma_url: str, timeout_s: float, settings: Any) -> Any:
    """An HttpClient whose every request gives up after `timeout_s`.

    chromadb's HTTP client has no timeout option (its httpx session is built with
    timeout=None), so the session's timeout is set after construction; the construction
    itself (a first request to the server) runs with a bounded wait.
    """
    import chromadb
    import httpx

    url = urlparse(chroma_url)
    if not url.hostname:
        raise StoreError(f"invalid Chroma server URL: {chroma_url!r}", location=chroma_url)
    made: dict[str, Any] = {}

    def make() -> None:
        try:
            made["client"] = chromadb.HttpClient(
                host=url.hostname or "",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=settings,
            )
        except Exception as exc:  # chromadb raises plain ValueError/ConnectionError here
            made["error"] = exc

    worker = threading.Thread(target=make, name="chroma-connect", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        cause = f"no answer within {timeout_s:g} s"
        raise StoreError(f"cannot reach the Chroma server at {chroma_url}: {cause}",
                         location=chroma_url, cause=cause)
    if "error" in made:
        exc = made["error"]
        cause = _cause(exc, timeout_s)
        raise StoreError(f"cannot reach the Chroma server at {chroma_url}: {cause}",
                         location=chroma_url, cause=cause) from exc
    client = made["client"]
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout_s)
    else:  # pragma: no cover - a chromadb whose HTTP client is built differently
        log.warning("cannot set a timeout on the Chroma server client; calls may hang")
    return client


def _client(data_dir: Path, chroma_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if chroma_url:
        return _http_client(chroma_url, timeout_s, chroma_settings)
    path = data_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    # Opening a new store creates its database: two processes doing it at once race on
    # the schema ("table collections already exists"), so opening is serialized too.
    import fcntl

    with open(path / ".open.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


P = ParamSpec("P")
R = TypeVar("R")


def _guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a failure to reach the Chroma server into a StoreError naming the URL and the
    cause. Other errors (a collection replaced meanwhile) pass through unchanged."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            owner = args[0] if args else None
            index = owner if isinstance(owner, ChromaIndex) else getattr(owner, "index", None)
            if isinstance(index, ChromaIndex) and index.server and is_unreachable(exc):
                raise index.unavailable(exc) from exc
            raise

    return wrapper


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
        "before": c.before,
    }


SENTENCES = "-sentences"  # suffix of a generation's sentence collection
MIN_SEARCH_CHARS = 16  # shorter sentences ("Read more.") match too much to lead a search


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
        before=str(meta.get("before", "")),
    )


_SEGMENT_DIR = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
WRITE_BATCH = 1000  # records per add/update/delete call, below Chroma's max batch size
GET_PAGE = 5000  # records per get call when reading a whole collection


class ChromaIndex:
    """Generations of one logical index, behind a pointer collection."""

    def __init__(self, data_dir: Path, chroma_url: str = "", name: str = "assistant",
                 timeout_s: float = DEFAULT_TIMEOUT_S, *, client: Any | None = None) -> None:
        """`client`: an open Chroma client of the same store to share (the indexes of several
        collections need one connection); by default one is opened."""
        self.name = name
        self.server = bool(chroma_url)
        self.path = data_dir / "chroma"
        self.location = chroma_url or str(self.path)
        self.keyword_root = data_dir / "keyword" / name
        self.timeout_s = timeout_s
        self.client = client if client is not None else _client(data_dir, chroma_url, timeout_s)
        self._cached: Any | None = None
        self._cached_sentences: tuple[str, Any | None] | None = None
        try:
            self._pointer = self.client.get_or_create_collection(
                f"{name}-pointer", embedding_function=None
            )
        except Exception as exc:
            if self.server and is_unreachable(exc):
                raise self.unavailable(exc) from exc
            raise StoreError(f"cannot open the Chroma index at {self.location}: {exc}",
                             location=self.location, cause=str(exc)) from exc

    def unavailable(self, exc: BaseException) -> StoreError:
        cause = _cause(exc, self.timeout_s)
        return StoreError(f"the Chroma server at {self.location} is unavailable: {cause}",
                          location=self.location, cause=cause)

    # -- pointer ---------------------------------------------------------------------------
    @_guarded
    def state(self) -> dict[str, Any]:
        """{'active': collection name or '', 'manifest': {doc_id: {...}}, 'generation': int}."""
        try:
            meta = self.client.get_collection(f"{self.name}-pointer").metadata or {}
        except Exception as exc:
            if self.server and is_unreachable(exc):
                raise
            raise StoreError(f"cannot read the Chroma index at {self.location}: {exc}",
                             location=self.location, cause=str(exc)) from exc
        return {
            "active": meta.get("active", ""),
            "generation": int(meta.get("generation", 0)),
            "manifest": json.loads(meta.get("manifest", "{}")),
            "embedding_model": meta.get("embedding_model", ""),
            "embedding_backend": meta.get("embedding_backend", ""),
        }

    def check(self) -> None:
        """Raise StoreError unless the index answers now (one small read)."""
        self.state()

    @_guarded
    def active_collection(self, refresh: bool = True) -> Any | None:
        """The served collection; with refresh=False, the one seen at the last check."""
        active = self.state()["active"] if refresh or self._cached is None else self._cached.name
        if not active:
            return None
        if self._cached is None or self._cached.name != active:
            self._cached = self.client.get_collection(active, embedding_function=None)
        return self._cached

    @_guarded
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
            except Exception as exc:  # NotFoundError (or ValueError in older chromadbs)
                if self.server and is_unreachable(exc):
                    raise
                found = None
            self._cached_sentences = (name, found)
        return self._cached_sentences[1]

    def has_sentences(self) -> bool:
        return self.active_collection() is not None and self.sentence_collection() is not None

    # -- reading ---------------------------------------------------------------------------
    @_guarded
    def all_chunks(self) -> list[Chunk]:
        col = self.active_collection()
        if col is None:
            return []
        got = _get_all(col, ["documents", "metadatas"])
        return [
            _chunk(i, t or "", m or {})
            for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        ]

    @_guarded
    def document_chunks(self, document: str) -> list[Chunk]:
        """The chunks of one document in the served generation, in document order."""
        col = self.active_collection()
        if col is None:
            return []
        got = col.get(where={"document": document}, include=["documents", "metadatas"])
        chunks = [_chunk(i, t or "", m or {})
                  for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)]
        return sorted(chunks, key=lambda c: c.start)

    @_guarded
    def count(self) -> int:
        col = self.active_collection()
        return int(col.count()) if col is not None else 0

    @_guarded
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

    @_guarded
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
        except StoreError:
            raise
        except Exception as exc:  # e.g. the generation was replaced: the caller embeds them
            if self.server and is_unreachable(exc):
                raise self.unavailable(exc) from exc
            log.debug("stored sentence vectors unavailable: %s", exc)
            return {}

    @_guarded
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
    def writer_lock(self, owner: str = "") -> WriterLock:
        """The lock every writer holds from reading the state to the flip (locking.py)."""
        from .locking import ChromaLease, FileLock

        if self.server:
            return ChromaLease(self.client, self.name, self.location, owner=owner)
        return FileLock(self.path / "ingest.lock")

    @contextmanager
    def writing(self, wait_s: float, notify: Notify | None = None) -> Iterator[WriterLock]:
        """Hold the writer lock; on entry, clear what earlier writers left on disk."""
        lock = self.writer_lock()
        try:
            lock.acquire(wait_s, notify)
        except Exception as exc:
            if self.server and is_unreachable(exc):
                raise self.unavailable(exc) from exc
            raise
        try:
            self.remove_orphaned_files()
            yield lock
        finally:
            lock.release()

    @_guarded
    def begin_generation(self, embedding_model: str) -> GenerationBuilder:
        """The next generation to write: an unfinished one left by an interrupted ingest with
        the same embedding model (resumed), or a new one. Call with the writer lock held."""
        state = self.state()
        active = state["active"]
        prefix = f"{self.name}-g"
        best: tuple[int, str] | None = None
        for cname in self._collection_names():
            if not cname.startswith(prefix) or cname.endswith(SENTENCES) or cname == active:
                continue
            try:
                generation = int(cname[len(prefix):].split("-", 1)[0])
                meta = self.client.get_collection(cname).metadata or {}
            except Exception as exc:
                if self.server and is_unreachable(exc):
                    raise
                continue
            if (generation > state["generation"] and meta.get("building")
                    and meta.get("embedding_model") == embedding_model
                    and cname + SENTENCES in self._collection_names()
                    and (best is None or generation > best[0])):
                best = (generation, cname)
        self.cleanup(keep={best[1], best[1] + SENTENCES} if best else set())
        if best is not None:
            generation, name = best
            chunks = self.client.get_collection(name, embedding_function=None)
            sentences = self.client.get_collection(name + SENTENCES, embedding_function=None)
            log.info("resuming the unfinished index generation %s", name)
            return GenerationBuilder(self, name, generation, chunks, sentences, resumed=True)
        generation = state["generation"] + 1
        name = f"{self.name}-g{generation}-{uuid.uuid4().hex[:12]}"
        meta = {"building": True, "embedding_model": embedding_model, "started": time.time()}
        chunks = self.client.create_collection(
            name, configuration={"hnsw": {"space": "cosine"}}, metadata=meta,
            embedding_function=None)
        sentences = self.client.create_collection(
            name + SENTENCES, configuration={"hnsw": {"space": "cosine"}}, metadata=meta,
            embedding_function=None)
        return GenerationBuilder(self, name, generation, chunks, sentences, resumed=False)

    @_guarded
    def flip(self, name: str, generation: int, manifest: dict[str, Any],
             embedding_model: str, embedding_backend: str = "") -> None:
        """One metadata update makes generation `name` the served one. The embedding backend
        that wrote it is recorded (its vectors equal the other backend's, so it is news, not
        a constraint)."""
        self._pointer.modify(
            metadata={
                "active": name,
                "generation": generation,
                "manifest": json.dumps(manifest, sort_keys=True),
                "embedding_model": embedding_model,
                "embedding_backend": embedding_backend,
                "updated": time.time(),
            }
        )

    def _collection_names(self) -> list[str]:
        return [c if isinstance(c, str) else c.name for c in self.client.list_collections()]

    @_guarded
    def store_names(self) -> list[str]:
        """The names of every Chroma collection in the store (of every index in it)."""
        try:
            return self._collection_names()
        except Exception as exc:
            if self.server and is_unreachable(exc):
                raise
            raise StoreError(f"cannot read the Chroma index at {self.location}: {exc}",
                             location=self.location, cause=str(exc)) from exc

    @_guarded
    def pointer_metadata(self, name: str) -> dict[str, Any] | None:
        """The pointer metadata of the index named `name` in the same store; None when that
        index does not exist."""
        try:
            return dict(self.client.get_collection(f"{name}-pointer").metadata or {})
        except Exception as exc:  # NotFoundError (or ValueError in older chromadbs)
            if self.server and is_unreachable(exc):
                raise
            return None

    @_guarded
    def cleanup(self, keep: set[str] | None = None) -> None:
        """Drop generations that are not active (older ones and interrupted ingests, except
        `keep`), then their files. Call with the writer lock held."""
        active = self.state()["active"]
        spare = {active, active + SENTENCES} | (keep or set())
        prefix = f"{self.name}-g"
        for cname in self._collection_names():
            if cname.startswith(prefix) and cname not in spare:
                try:
                    self.client.delete_collection(cname)
                except Exception as exc:
                    if self.server and is_unreachable(exc):
                        raise
                    log.warning("could not delete old collection %s: %s", cname, exc)
        self.remove_orphaned_files()
        self._remove_keyword_indexes(spare)

    # -- keyword indexes (keyword.py) -------------------------------------------------------
    def keyword_path(self, generation: str) -> Path:
        return self.keyword_root / generation

    def build_keyword_index(self, generation: str, col: Any | None = None) -> Path:
        """Write the keyword index of a generation from its stored chunks, in the order the
        store returns them (the order a scan of the collection sees)."""
        from .keyword import KeywordIndex

        col = col if col is not None else self.client.get_collection(
            generation, embedding_function=None)
        got = _get_all(col, ["documents", "metadatas"])
        chunks = [_chunk(i, t or "", m or {}) for i, t, m in
                  zip(got["ids"], got["documents"], got["metadatas"], strict=True)]
        return KeywordIndex.build(self.keyword_path(generation), chunks)

    def ensure_keyword_index(self, generation: str) -> Path:
        """The keyword index of `generation`, built now when this machine has none (under a
        file lock: concurrent readers build it once)."""
        import fcntl

        from .keyword import KeywordIndex

        path = self.keyword_path(generation)
        if KeywordIndex.exists(path):
            return path
        self.keyword_root.mkdir(parents=True, exist_ok=True)
        with open(self.keyword_root / ".build.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not KeywordIndex.exists(path):
                    log.info("building the keyword index of %s", generation)
                    self.build_keyword_index(generation)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return path

    def _remove_keyword_indexes(self, keep: set[str]) -> None:
        if not self.keyword_root.is_dir():
            return
        for d in self.keyword_root.iterdir():
            # (".building-*": a reader building one right now)
            if d.is_dir() and d.name not in keep and not d.name.startswith("."):
                shutil.rmtree(d, ignore_errors=True)

    def remove_orphaned_files(self) -> list[str]:
        """Embedded store: delete segment folders that no collection references any more.

        chromadb's delete_collection drops a collection from its database but leaves the
        folder of its vector index on disk, so every replaced generation would stay there.
        The folders are listed before the live segments are read: a folder created
        meanwhile belongs to a segment already recorded, so it is never taken for an orphan.
        """
        if self.server or not self.path.is_dir():
            return []
        folders = [d for d in self.path.iterdir() if d.is_dir() and _SEGMENT_DIR.match(d.name)]
        if not folders:
            return []
        try:
            db = sqlite3.connect(f"file:{self.path / 'chroma.sqlite3'}?mode=ro", uri=True,
                                 timeout=self.timeout_s)
            try:
                live = {str(row[0]) for row in db.execute("SELECT id FROM segments")}
            finally:
                db.close()
        except sqlite3.Error as exc:  # an unknown layout: better to leave files behind
            log.warning("cannot list the live index segments in %s: %s", self.path, exc)
            return []
        removed = []
        for folder in folders:
            if folder.name not in live:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        if removed:
            log.info("removed %d index folders no collection uses", len(removed))
        return removed

    @_guarded
    def reset(self) -> None:
        for cname in self._collection_names():
            if cname.startswith(f"{self.name}-"):
                self.client.delete_collection(cname)
        self._pointer = self.client.get_or_create_collection(
            f"{self.name}-pointer", embedding_function=None
        )
        self.remove_orphaned_files()
        self._remove_keyword_indexes(set())


def _get_all(col: Any, include: list[str], where: dict[str, Any] | None = None
             ) -> dict[str, list[Any]]:
    """Every record of a collection (or those matching `where`), read in pages."""
    out: dict[str, list[Any]] = {"ids": [], **{k: [] for k in include}}
    offset = 0
    while True:
        got = col.get(where=where, include=include, limit=GET_PAGE, offset=offset)
        ids = list(got["ids"])
        out["ids"] += ids
        for k in include:
            out[k] += list(got[k] if got[k] is not None else [])
        if len(ids) < GET_PAGE:
            return out
        offset += len(ids)


def _write(method: Callable[..., Any], ids: list[str], **columns: Any) -> None:
    for i in range(0, len(ids), WRITE_BATCH):
        part = {k: list(v[i : i + WRITE_BATCH]) for k, v in columns.items()}
        if "embeddings" in part:
            part["embeddings"] = [np.asarray(e, dtype=np.float32).tolist()
                                  for e in part["embeddings"]]
        method(ids=ids[i : i + WRITE_BATCH], **part)


class GenerationBuilder:
    """A generation being written: batches arrive as they are embedded, `commit` flips.

    A resumed generation already holds records from an interrupted ingest. Their ids are
    content hashes (a chunk's: its document, section and text; a sentence's: its chunk and
    offsets), so a record whose id is wanted again holds the right vector; `wanted_*` says
    which to keep, and `commit` deletes the rest.
    """

    def __init__(self, index: ChromaIndex, name: str, generation: int, chunks: Any,
                 sentences: Any, *, resumed: bool) -> None:
        self.index = index
        self.name = name
        self.generation = generation
        self.chunks = chunks
        self.sentences = sentences
        self.resumed = resumed
        self._chunk_meta: dict[str, dict[str, Any]] = {}
        self.sentence_ids: set[str] = set()
        if resumed:
            got = _get_all(chunks, ["metadatas"])
            self._chunk_meta = {i: dict(m or {}) for i, m in
                                zip(got["ids"], got["metadatas"], strict=True)}
            self.sentence_ids = set(_get_all(sentences, [])["ids"])
        self.wanted_chunks: set[str] = set()
        self.wanted_sentences: set[str] = set()

    @property
    def chunk_ids(self) -> set[str]:
        return set(self._chunk_meta)

    @_guarded
    def reuse_chunks(self, chunks: list[Chunk]) -> set[str]:
        """Of `chunks`, the ids this generation already holds (their metadata is brought up
        to date: a title or offsets can change while the text stays)."""
        held: set[str] = set()
        stale: list[Chunk] = []
        for c in chunks:
            meta = self._chunk_meta.get(c.id)
            if meta is None:
                continue
            held.add(c.id)
            if meta != _metadata(c):
                stale.append(c)
        if stale:
            _write(self.chunks.update, [c.id for c in stale],
                   metadatas=[_metadata(c) for c in stale])
        self.wanted_chunks |= held
        return held

    def reuse_sentences(self, ids: list[str]) -> set[str]:
        held = {i for i in ids if i in self.sentence_ids}
        self.wanted_sentences |= held
        return held

    @_guarded
    def add_chunks(self, chunks: list[Chunk], embeddings: Any) -> None:
        if not chunks:
            return
        ids = [c.id for c in chunks]
        _write(self.chunks.upsert, ids, embeddings=embeddings,
               documents=[c.text for c in chunks], metadatas=[_metadata(c) for c in chunks])
        self.wanted_chunks.update(ids)
        self._chunk_meta.update({c.id: _metadata(c) for c in chunks})

    @_guarded
    def add_sentences(self, units: list[tuple[Chunk, Sentence]], embeddings: Any) -> None:
        if not units:
            return
        ids = [sentence_id(c.id, s.start, s.end) for c, s in units]
        # The id holds the chunk and the offsets; the document lets a later ingest carry
        # the sentences of an unchanged document over.
        _write(self.sentences.upsert, ids, embeddings=embeddings,
               documents=[s.text for _, s in units],
               metadatas=[{"document": c.document} for c, _ in units])
        self.wanted_sentences.update(ids)
        self.sentence_ids.update(ids)

    @_guarded
    def copy_documents(self, documents: set[str]) -> int:
        """Carry the stored records of unchanged documents over from the served generation
        (nothing is embedded again); returns how many chunks they hold."""
        old = self.index.active_collection()
        if old is None or not documents:
            return 0
        old_sent = self.index.sentence_collection(refresh=False)
        copied = 0
        for doc in sorted(documents):
            ids = _get_all(old, [], where={"document": doc})["ids"]
            self.wanted_chunks.update(ids)
            copied += len(ids)
            for got in self._missing(old, ids, self._chunk_meta):
                _write(self.chunks.upsert, list(got["ids"]), embeddings=got["embeddings"],
                       documents=got["documents"], metadatas=got["metadatas"])
                self._chunk_meta.update({i: dict(m or {}) for i, m in
                                         zip(got["ids"], got["metadatas"], strict=True)})
            if old_sent is None:
                continue
            ids = _get_all(old_sent, [], where={"document": doc})["ids"]
            self.wanted_sentences.update(ids)
            for got in self._missing(old_sent, ids, self.sentence_ids):
                _write(self.sentences.upsert, list(got["ids"]), embeddings=got["embeddings"],
                       documents=got["documents"], metadatas=got["metadatas"])
                self.sentence_ids.update(got["ids"])
        return copied

    @_guarded
    def carry_over(self, chunks: list[Chunk], sentence_ids: list[str]) -> None:
        """Bring over from the served generation the vectors of the chunks and sentences of
        changed documents that it already holds under the same ids (an id is a hash of the
        text it was embedded from): only what changed is embedded again. A chunk gets its
        new metadata (offsets and the text before it may have moved)."""
        old = self.index.active_collection()
        if old is None or not chunks:
            return
        by_id = {c.id: c for c in chunks}
        for got in self._missing(old, list(by_id), self._chunk_meta, ["embeddings"]):
            ids = list(got["ids"])
            metas = [_metadata(by_id[i]) for i in ids]
            _write(self.chunks.upsert, ids, embeddings=got["embeddings"],
                   documents=[by_id[i].text for i in ids], metadatas=metas)
            self._chunk_meta.update(zip(ids, metas, strict=True))
        old_sent = self.index.sentence_collection(refresh=False)
        if old_sent is None:
            return
        for got in self._missing(old_sent, sentence_ids, self.sentence_ids):
            _write(self.sentences.upsert, list(got["ids"]), embeddings=got["embeddings"],
                   documents=got["documents"], metadatas=got["metadatas"])
            self.sentence_ids.update(got["ids"])

    @staticmethod
    def _missing(src: Any, ids: list[str], held: Any,
                 include: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """The records of `ids` not held yet, read from `src` in pages."""
        missing = [i for i in ids if i not in held]
        for i in range(0, len(missing), WRITE_BATCH):
            yield src.get(ids=missing[i : i + WRITE_BATCH],
                          include=include or ["documents", "metadatas", "embeddings"])

    @_guarded
    def commit(self, manifest: dict[str, Any], embedding_model: str,
               embedding_backend: str = "") -> str:
        """Delete what an interrupted ingest wrote that is no longer wanted, flip to this
        generation, and drop the older ones. Call with the writer lock held."""
        for col, held, wanted in ((self.chunks, set(self._chunk_meta), self.wanted_chunks),
                                  (self.sentences, self.sentence_ids, self.wanted_sentences)):
            extra = sorted(held - wanted)
            if extra:
                _write(col.delete, extra)
        self.index.build_keyword_index(self.name, self.chunks)
        self.index.flip(self.name, self.generation, manifest, embedding_model,
                        embedding_backend)
        self.index.cleanup()
        return self.name
