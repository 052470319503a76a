"""Where passages come from: dense search in Chroma (over chunks, and over their sentences)
plus BM25 keyword search, fused by RRF."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .chunking import Chunk, embedding_text
from .embeddings import Embedder
from .store import ChromaIndex, StoreError
from .text import defines, definition_subject, tokens
from .types import Passage

log = logging.getLogger(__name__)

RRF_K = 60  # the usual constant from Cormack et al. (2009)


def rrf(rankings: list[list[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of several ranked id lists; best first, ties by first list."""
    scores: dict[str, float] = {}
    order: dict[str, int] = {}
    for ranking in rankings:
        for rank, id_ in enumerate(ranking):
            scores[id_] = scores.get(id_, 0.0) + 1.0 / (k + rank + 1)
            order.setdefault(id_, len(order))
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def keep_leaders(fused: list[tuple[str, float]], rankings: list[list[str]], k: int,
                 leaders: int = 2) -> list[tuple[str, float]]:
    """The top k of a fusion, with each ranking's first `leaders` hits guaranteed a place.

    When one retriever is uninformative (every chunk matches the query words), plain RRF can
    push the other retriever's clear winners out of the top k; this keeps them in.
    """
    top = fused[:k]
    chosen = {i for i, _ in top}
    scores = dict(fused)
    must = [i for r in rankings for i in r[:leaders] if i not in chosen]
    for i in dict.fromkeys(must):
        # Replace the weakest entry that is not itself a leader.
        protected = {j for r in rankings for j in r[:leaders]}
        for pos in range(len(top) - 1, -1, -1):
            if top[pos][0] not in protected:
                chosen.discard(top[pos][0])
                top[pos] = (i, scores[i])
                chosen.add(i)
                break
    return sorted(top, key=lambda kv: -kv[1])


class BM25:
    """Okapi BM25 over pre-tokenised documents (small and dependency-free)."""

    def __init__(self, docs: list[list[str]], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.tf = [Counter(d) for d in docs]
        self.len = np.array([len(d) for d in docs], dtype=np.float32)
        self.avg = float(self.len.mean()) if len(docs) else 0.0
        df: Counter[str] = Counter()
        for d in self.tf:
            df.update(d.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.max_idf = math.log(1 + (n + 0.5) / 0.5) if n else 1.0
        self.postings: dict[str, list[int]] = {}
        for i, d in enumerate(self.tf):
            for t in d:
                self.postings.setdefault(t, []).append(i)

    def scores(self, query: list[str]) -> dict[int, float]:
        out: dict[int, float] = {}
        for t in set(query):
            idf = self.idf.get(t)
            if idf is None:
                continue
            for i in self.postings[t]:
                f = self.tf[i][t]
                denom = f + self.k1 * (1 - self.b + self.b * self.len[i] / (self.avg or 1.0))
                out[i] = out.get(i, 0.0) + idf * f * (self.k1 + 1) / denom
        return out

    def term_weight(self, term: str) -> float:
        """idf of a term; unseen terms weigh like the rarest ones."""
        return self.idf.get(term, self.max_idf)


@dataclass(frozen=True)
class Snapshot:
    """What keyword search reads, built whole and never changed: a refresh makes a new one
    and swaps one reference, so a query that took the reference sees one generation."""

    active: str = ""
    chunks: dict[str, Chunk] = field(default_factory=dict)
    ids: tuple[str, ...] = ()
    bm25: BM25 = field(default_factory=lambda: BM25([]))
    documents: frozenset[str] = frozenset()

    @classmethod
    def build(cls, active: str, chunks: list[Chunk]) -> Snapshot:
        return cls(active=active, chunks={c.id: c for c in chunks},
                   ids=tuple(c.id for c in chunks),
                   bm25=BM25([tokens(embedding_text(c.section, c.text)) for c in chunks]),
                   documents=frozenset(c.document for c in chunks))


class HybridRetriever:
    """Dense + keyword retrieval over the active index generation.

    Chunk texts are held in memory for BM25 (a `Snapshot`); they are reloaded when the index
    generation changes (checked at most every `refresh_s` seconds so queries stay cheap).
    """

    def __init__(
        self,
        index: ChromaIndex,
        embedder: Embedder,
        *,
        candidates: int = 20,
        hybrid: bool = True,
        sentence_search: bool = True,
        refresh_s: float = 2.0,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.candidates = candidates
        self.hybrid = hybrid
        self.sentence_search = sentence_search
        self.refresh_s = refresh_s
        self._lock = threading.Lock()  # one refresh at a time; queries never wait for it
        self._checked = 0.0
        self.snapshot = Snapshot()
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self.refresh_s:
            return
        with self._lock:
            self._checked = now
            active = self.index.state()["active"]
            if active == self.snapshot.active and not force:
                return
            chunks = self.index.all_chunks()
            self.snapshot = Snapshot.build(active, chunks)  # the one swap readers see
            log.info("retriever: %d chunks from %s", len(chunks), active or "(empty index)")

    # Views of the current snapshot (each reads the reference once).
    @property
    def chunks(self) -> dict[str, Chunk]:
        return self.snapshot.chunks

    @property
    def bm25(self) -> BM25:
        return self.snapshot.bm25

    @property
    def documents(self) -> set[str]:
        return set(self.snapshot.documents)

    def embed_query(self, query: str) -> np.ndarray:
        return self.embedder.embed([query])[0]

    def dense(self, query_vec: np.ndarray, k: int) -> list[tuple[str, float]]:
        try:
            return self.index.query(query_vec, k)
        except StoreError:  # the store is down or stalled: retrying would wait again
            raise
        except Exception:  # the generation may have been replaced under us: reload once
            self.refresh(force=True)
            return self.index.query(query_vec, k)

    def _sentences(self, vec: np.ndarray) -> list[tuple[str, float]]:
        try:
            return self.index.query_sentences(vec, self.candidates)
        except StoreError:
            raise
        except Exception as exc:  # replaced mid-query, as in dense(): the chunk lists suffice
            log.warning("sentence search failed (%s); using the chunk rankings only", exc)
            return []

    def keyword(self, query: str, k: int, snap: Snapshot | None = None
                ) -> list[tuple[str, float]]:
        snap = snap or self.snapshot
        scored = snap.bm25.scores(tokens(query))
        best = sorted(scored.items(), key=lambda kv: -kv[1])[:k]
        return [(snap.ids[i], s) for i, s in best]

    def retrieve(self, query: str, k: int, query_vec: np.ndarray | None = None) -> list[Passage]:
        """The k best passages for `query`; each carries its fused score and dense similarity."""
        self.refresh()
        snap = self.snapshot  # this query reads this one snapshot throughout
        chunks = snap.chunks
        if not chunks:
            return []
        vec = self.embed_query(query) if query_vec is None else query_vec
        dense = self.dense(vec, self.candidates)
        rankings = [[i for i, _ in dense]]
        if self.sentence_search:
            # A chunk whose one sentence matches the question closely ("spying software sold
            # abroad" ~ "export controls ... cyber surveillance technologies") ranks low by
            # the chunk's own vector, which averages all of its sentences.
            rankings.append([i for i, _ in self._sentences(vec) if i in chunks])
        if self.hybrid:
            rankings.append([i for i, _ in self.keyword(query, self.candidates, snap)])
            subject = definition_subject(query)
            if subject:
                # "What is X?": the passage that defines X ("**X** – a set of ...") may share
                # only the term with the question, like every other passage about X.
                rankings.append([i for i in snap.ids if defines(chunks[i].text, subject)]
                                [: self.candidates])
        fused = keep_leaders(rrf(rankings), rankings, k)
        similarity = dict(dense)
        missing = [i for i, _ in fused if i not in similarity and i in chunks]
        if missing:  # keyword-only hits: their stored vectors give the dense similarity
            for i, v in self.index.embeddings(missing).items():
                similarity[i] = float(np.dot(vec, v))
        out: list[Passage] = []
        for id_, score in fused:
            c = chunks.get(id_)
            if c is None:
                continue
            out.append(
                Passage(id=c.id, document=c.document, title=c.title, section=c.section,
                        text=c.text, start=c.start, end=c.end, score=score,
                        similarity=similarity.get(id_, 0.0))
            )
        return out
