"""Where passages come from: dense search in Chroma (over chunks, and over their sentences)
plus BM25 keyword search (an on-disk index per generation, keyword.py), fused by RRF."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .embeddings import Embedder
from .keyword import KeywordIndex
from .store import ChromaIndex, StoreError
from .text import definition_subject
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
    """Okapi BM25 over pre-tokenised documents, in memory: the reference the on-disk keyword
    index (keyword.py) is tested against."""

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
    """What keyword search reads, loaded whole and never changed: a refresh makes a new one
    and swaps one reference, so a query that took the reference sees one generation."""

    active: str = ""
    keyword: KeywordIndex = field(default_factory=KeywordIndex.empty)


def load_keyword_index(index: ChromaIndex, active: str) -> KeywordIndex:
    """The served generation's keyword index: mapped from disk (built first when this machine
    has none); held in memory when the folder cannot be written."""
    if not active:
        return KeywordIndex.empty()
    try:
        return KeywordIndex.load(index.ensure_keyword_index(active))
    except OSError as exc:
        log.warning("keyword index on disk unavailable (%s); holding it in memory", exc)
        return KeywordIndex.from_chunks(index.all_chunks())


class HybridRetriever:
    """Dense + keyword retrieval over the active index generation.

    The keyword index (a `Snapshot`) is mapped from the generation's folder, and mapped again
    when the index generation changes (checked at most every `refresh_s` seconds so queries
    stay cheap). It also holds the chunks' texts and metadata that passages are made of.
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
            self.index.active_collection()  # the store's handles follow the new generation
            keyword = load_keyword_index(self.index, active)
            self.snapshot = Snapshot(active, keyword)  # the one swap readers see
            log.info("retriever: %d chunks from %s", keyword.count, active or "(empty index)")

    # Views of the current snapshot (each reads the reference once).
    @property
    def count(self) -> int:
        return self.snapshot.keyword.count

    @property
    def bm25(self) -> KeywordIndex:
        """The keyword index (its `term_weight` weighs the extractive scorer's words)."""
        return self.snapshot.keyword

    @property
    def documents(self) -> set[str]:
        return set(self.snapshot.keyword.documents)

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
        return snap.keyword.search(query, k)

    def retrieve(self, query: str, k: int, query_vec: np.ndarray | None = None) -> list[Passage]:
        """The k best passages for `query`; each carries its fused score and dense similarity."""
        self.refresh()
        snap = self.snapshot  # this query reads this one snapshot throughout
        keyword = snap.keyword
        if not keyword.count:
            return []
        vec = self.embed_query(query) if query_vec is None else query_vec
        dense = self.dense(vec, self.candidates)
        rankings = [[i for i, _ in dense]]
        if self.sentence_search:
            # A chunk whose one sentence matches the question closely ("spying software sold
            # abroad" ~ "export controls ... cyber surveillance technologies") ranks low by
            # the chunk's own vector, which averages all of its sentences.
            rankings.append([i for i, _ in self._sentences(vec) if keyword.has(i)])
        if self.hybrid:
            rankings.append([i for i, _ in self.keyword(query, self.candidates, snap)])
            subject = definition_subject(query)
            if subject:
                # "What is X?": the passage that defines X ("**X** – a set of ...") may share
                # only the term with the question, like every other passage about X.
                rankings.append(keyword.defining(subject, self.candidates))
        fused = keep_leaders(rrf(rankings), rankings, k)
        similarity = dict(dense)
        missing = [i for i, _ in fused if i not in similarity and keyword.has(i)]
        if missing:  # keyword-only hits: their stored vectors give the dense similarity
            for i, v in self.index.embeddings(missing).items():
                similarity[i] = float(np.dot(vec, v))
        out: list[Passage] = []
        for id_, score in fused:
            c = keyword.chunk(id_)
            if c is None:
                continue
            out.append(
                Passage(id=c.id, document=c.document, title=c.title, section=c.section,
                        text=c.text, start=c.start, end=c.end, score=score,
                        similarity=similarity.get(id_, 0.0))
            )
        return out
