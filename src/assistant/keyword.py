"""Keyword search on disk: one BM25 index per index generation, built by the ingest beside
the generation's collections and removed with them (store.py).

The BM25 scores are bm25s's (Lucene's variant: the same idf and term-frequency saturation as
the Okapi formula, k1 = 1.2, b = 0.75, so the same ranking), precomputed per term and document
into sparse arrays that a server maps from disk (`mmap`) instead of holding every chunk's text
and postings in its memory. Beside them, in the same folder:

- `chunks.jsonl` + `offsets.npy`: each chunk's id, text and metadata, read one line at a time
  for the passages a query returns (mapped, not loaded);
- `heads.npy`: for "What is X?" questions, a sorted table of hashes of the phrases that open a
  sentence and stand before a definition marker ("X –", "X is ...", text.defines), so the
  chunks that define X are found without reading every chunk;
- `meta.json`: the format, the chunk count, the documents.

Tokens are the project's own (text.tokens: stemmed content words), the same as the in-memory
BM25 of retrieval.py, which stays as the reference the tests compare against.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import mmap
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .chunking import Chunk, embedding_text
from .text import defines, strip_markdown, tokens

log = logging.getLogger(__name__)

FORMAT = "1"  # bump when the files change: an index of another format is built again
K1, B = 1.2, 0.75
HEAD_CHARS = 120  # longest phrase kept as a definition head (subjects are at most 4 words)
_OPENING = re.compile(r"[\n.;:]\s*")
_ARTICLE = re.compile(r"(?:the\s+|an?\s+)", re.IGNORECASE)
_MARKER = re.compile(r"\s*(?:–|—|-|:|\bis\b|\bare\b|\bmeans\b|\brefers to\b)", re.IGNORECASE)


def _hash(phrase: str) -> int:
    return int.from_bytes(hashlib.blake2b(phrase.lower().encode(), digest_size=8).digest(),
                          "little") >> 1  # fits int64


def definition_heads(text: str) -> set[str]:
    """Every phrase X for which `defines(text, X)` can hold: X opens the text or follows one
    of `\\n . ; :` (after an optional article) and a definition marker follows it."""
    plain = strip_markdown(text)
    starts = [0] + [m.end() for m in _OPENING.finditer(plain)]
    markers = [m.start() for m in _MARKER.finditer(plain)]
    # _MARKER's leading \s* lets a marker start at the whitespace before it; also every later
    # position a shorter \s* would give.
    heads: set[str] = set()
    for start in starts:
        opens = [start]
        article = _ARTICLE.match(plain, start)
        if article:
            opens.append(article.end())
        for s in opens:
            for m in markers:
                if m <= s:
                    continue
                if m - s > HEAD_CHARS:
                    break
                phrase = plain[s:m].rstrip()
                if phrase:
                    heads.add(phrase.lower())
    return heads


def _bm25_class() -> Any:
    import bm25s

    return bm25s.BM25


class KeywordIndex:
    """BM25 over the chunks of one generation, with their records (see the module doc)."""

    def __init__(self, bm25: Any, ids: list[str], records: Any, offsets: np.ndarray,
                 heads: np.ndarray, documents: list[str], folder: Path | None = None) -> None:
        self.bm25 = bm25
        self.ids = ids
        self.position = {i: n for n, i in enumerate(ids)}
        self._records = records  # bytes or an mmap of chunks.jsonl
        self._offsets = offsets
        self._heads = heads  # (n, 2) int64: hash, chunk position; sorted by hash
        self.documents = documents
        self.folder = folder
        n = len(ids)
        self.max_idf = math.log(1 + (n + 0.5) / 0.5) if n else 1.0

    # -- building --------------------------------------------------------------------------
    @staticmethod
    def _parts(chunks: list[Chunk], records: Any) -> dict[str, Any]:
        """Everything but the records, which are written to `records` (a binary file) as
        they are made: a large corpus is never held twice."""
        offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
        hashes: list[np.ndarray] = []
        for n, c in enumerate(chunks):
            line = json.dumps({"id": c.id, "document": c.document, "title": c.title,
                               "section": c.section, "text": c.text, "start": c.start,
                               "end": c.end, "before": c.before},
                              ensure_ascii=False).encode() + b"\n"
            records.write(line)
            offsets[n + 1] = offsets[n] + len(line)
            hashes.append(np.array(sorted({_hash(h) for h in definition_heads(c.text)}),
                                   dtype=np.int64))
        counts = np.array([len(h) for h in hashes], dtype=np.int64)
        heads = np.empty((int(counts.sum()), 2), dtype=np.int64)
        if len(heads):
            heads[:, 0] = np.concatenate(hashes)
            heads[:, 1] = np.repeat(np.arange(len(chunks), dtype=np.int64), counts)
            heads = heads[np.lexsort((heads[:, 1], heads[:, 0]))]
        del hashes
        bm25 = None
        if chunks:
            bm25 = _bm25_class()(k1=K1, b=B, method="lucene")
            bm25.index([tokens(embedding_text(c.section, c.text)) for c in chunks],
                       show_progress=False)
        return {"offsets": offsets, "heads": heads, "bm25": bm25,
                "documents": sorted({c.document for c in chunks})}

    @classmethod
    def from_chunks(cls, chunks: list[Chunk]) -> KeywordIndex:
        """An index held in memory (tests, and a store whose folder cannot be written)."""
        records = io.BytesIO()
        p = cls._parts(chunks, records)
        return cls(p["bm25"], [c.id for c in chunks], records.getvalue(), p["offsets"],
                   p["heads"], p["documents"])

    @classmethod
    def build(cls, folder: Path, chunks: Iterable[Chunk]) -> Path:
        """Write the index of `chunks` (in their order) to `folder`, whole or not at all."""
        chunks = list(chunks)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".building-{folder.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            with open(tmp / "chunks.jsonl", "wb") as records:
                p = cls._parts(chunks, records)
            if p["bm25"] is not None:
                p["bm25"].save(str(tmp / "bm25"))
            np.save(tmp / "offsets.npy", p["offsets"])
            np.save(tmp / "heads.npy", p["heads"])
            (tmp / "ids.json").write_text(json.dumps([c.id for c in chunks]), encoding="utf-8")
            (tmp / "meta.json").write_text(json.dumps(
                {"format": FORMAT, "chunks": len(chunks), "documents": p["documents"]}),
                encoding="utf-8")
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("keyword index of %d chunks written to %s", len(chunks), folder)
        return folder

    @staticmethod
    def exists(folder: Path) -> bool:
        meta = folder / "meta.json"
        try:
            return bool(meta.is_file() and json.loads(meta.read_text())["format"] == FORMAT)
        except (OSError, ValueError, KeyError):
            return False

    @classmethod
    def load(cls, folder: Path) -> KeywordIndex:
        """Map an index written by `build` (its arrays and records stay on disk)."""
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        bm25 = None
        if ids:
            bm25 = _bm25_class().load(str(folder / "bm25"), mmap=True, load_corpus=False)
        with open(folder / "chunks.jsonl", "rb") as f:
            records: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if ids else b""
        return cls(bm25, ids, records, np.load(folder / "offsets.npy", mmap_mode="r"),
                   np.load(folder / "heads.npy", mmap_mode="r"), list(meta["documents"]),
                   folder)

    @classmethod
    def empty(cls) -> KeywordIndex:
        return cls.from_chunks([])

    # -- reading ---------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self.ids)

    def has(self, chunk_id: str) -> bool:
        return chunk_id in self.position

    def chunk(self, chunk_id: str) -> Chunk | None:
        n = self.position.get(chunk_id)
        if n is None:
            return None
        return self._chunk_at(n)

    def _chunk_at(self, n: int) -> Chunk:
        raw = self._records[int(self._offsets[n]) : int(self._offsets[n + 1])]
        r = json.loads(raw)
        return Chunk(id=r["id"], document=r["document"], title=r["title"], section=r["section"],
                     text=r["text"], start=int(r["start"]), end=int(r["end"]),
                     before=r.get("before", ""))

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The k chunks with the highest BM25 score for `query`, best first (ties: index
        order); only chunks sharing a term with it."""
        if self.bm25 is None or k <= 0:
            return []
        vocab = self.bm25.vocab_dict
        terms = [t for t in dict.fromkeys(tokens(query)) if t in vocab]
        if not terms:
            return []
        # bm25s's own scorer adds with np.add.at; a term's column holds each document once,
        # so plain fancy-index addition gives the same sums, several times faster.
        arrays = self.bm25.scores
        data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
        scores = np.zeros(self.count, dtype=np.float32)
        for t in (vocab[t] for t in terms):
            lo, hi = int(indptr[t]), int(indptr[t + 1])
            scores[indices[lo:hi]] += data[lo:hi]
        hits = np.flatnonzero(scores > 0)
        if len(hits) > 4 * k:  # only the best few need sorting
            hits = hits[np.argpartition(-scores[hits], 4 * k)[: 4 * k]]
        best = hits[np.lexsort((hits, -scores[hits]))][:k]
        return [(self.ids[int(i)], float(scores[i])) for i in best]

    def knows(self, term: str) -> bool:
        """Do the documents use this (tokenised) term?"""
        return self.bm25 is not None and term in self.bm25.vocab_dict

    def term_weight(self, term: str) -> float:
        """idf of a term; unseen terms weigh like the rarest ones."""
        if self.bm25 is None:
            return self.max_idf
        t = self.bm25.vocab_dict.get(term)
        if t is None:
            return self.max_idf
        indptr = self.bm25.scores["indptr"]
        df = int(indptr[t + 1] - indptr[t])
        if df == 0:
            return self.max_idf
        n = self.count
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def defining(self, subject: str, limit: int) -> list[str]:
        """Ids of the chunks that define `subject` (text.defines), in index order."""
        if not subject or not len(self._heads):
            return []
        key = _hash(subject.strip())
        hashes = self._heads[:, 0]
        lo, hi = np.searchsorted(hashes, key, "left"), np.searchsorted(hashes, key, "right")
        out: list[str] = []
        for n in sorted(int(x) for x in self._heads[lo:hi, 1]):
            c = self._chunk_at(n)
            if defines(c.text, subject):  # a hash collision is ruled out here
                out.append(c.id)
                if len(out) >= limit:
                    break
        return out
