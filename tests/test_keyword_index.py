"""The on-disk keyword index (keyword.py) against the in-memory BM25 it replaced: the same
ranking, idf and definition lookups on a real corpus; the files written whole; built with its
generation, rebuilt when missing, and removed with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from assistant.chunking import Chunk, chunk_document, embedding_text
from assistant.documents import load_document
from assistant.keyword import KeywordIndex, definition_heads
from assistant.retrieval import BM25
from assistant.text import defines, definition_subject, tokens

ROOT = Path(__file__).resolve().parents[1]
BROCHURE = ROOT / "corpus" / "cyber-diplomacy-in-the-eu.md"
MULTIDOC = Path(__file__).resolve().parent / "fixtures" / "multidoc"


@pytest.fixture(scope="module")
def chunks() -> list[Chunk]:
    out: list[Chunk] = []
    for path in [BROCHURE, *sorted(MULTIDOC.iterdir())]:
        out += chunk_document(load_document(path, path.name), 900)
    return out


def _questions() -> list[str]:
    items = [json.loads(line) for line in (ROOT / "eval" / "questions.jsonl").open()]
    return [i["question"] for i in items if i["question"].strip()]


def _reference(chunks: list[Chunk], query: str, k: int) -> list[tuple[str, float]]:
    bm25 = BM25([tokens(embedding_text(c.section, c.text)) for c in chunks])
    scored = bm25.scores(tokens(query))
    best = sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [(chunks[i].id, s) for i, s in best]


def test_the_same_ranking_as_the_in_memory_bm25(chunks: list[Chunk], tmp_path: Path) -> None:
    index = KeywordIndex.load(KeywordIndex.build(tmp_path / "g1", chunks))
    compared = 0
    for q in _questions():
        want = _reference(chunks, q, 10)
        got = index.search(q, 10)
        assert [i for i, _ in got] == [i for i, _ in want] or all(
            # float32 scores on disk: only near-ties may swap
            abs(a - b) < 1e-4 for (_, a), (_, b) in zip(got, want, strict=True)), q
        assert got == [] or np.allclose([s for _, s in got],
                                        [s / (1 + 1.2) for _, s in want], rtol=1e-4), q
        compared += bool(want)
    assert compared > 90


def test_term_weights_are_the_bm25_idf(chunks: list[Chunk]) -> None:
    bm25 = BM25([tokens(embedding_text(c.section, c.text)) for c in chunks])
    index = KeywordIndex.from_chunks(chunks)
    for term in ["ransomwar", "secur", "cyber", "eu", "zzzunseen", "notpetya"]:
        assert index.term_weight(term) == pytest.approx(bm25.term_weight(term), rel=1e-6)


def test_definition_lookups_find_what_a_scan_finds(chunks: list[Chunk]) -> None:
    index = KeywordIndex.from_chunks(chunks)
    subjects = {definition_subject(q) for q in _questions()} - {""}
    subjects |= {h for c in chunks for h in definition_heads(c.text)
                 if len(tokens(h)) <= 4}  # every phrase that opens a definition
    assert len(subjects) > 40
    subjects |= {s.upper() for s in list(subjects)[:10]}  # the lookup ignores case
    for subject in subjects:
        scan = [c.id for c in chunks if defines(c.text, subject)]
        assert index.defining(subject, 1000) == scan, subject
    assert index.defining("cyber diplomacy", 1)  # the brochure defines it
    assert index.defining("a term no chunk defines", 5) == []


def test_records_read_back_from_disk_whole(chunks: list[Chunk], tmp_path: Path) -> None:
    folder = KeywordIndex.build(tmp_path / "g1", chunks)
    assert KeywordIndex.exists(folder)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
    index = KeywordIndex.load(folder)
    assert index.count == len(chunks)
    assert all(index.chunk(c.id) == c for c in chunks)
    assert index.chunk("no-such-id") is None
    assert index.documents == sorted({c.document for c in chunks})
    empty = KeywordIndex.load(KeywordIndex.build(tmp_path / "g0", []))
    assert empty.count == 0 and empty.search("anything", 5) == []


@pytest.mark.slow
def test_built_with_its_generation_rebuilt_when_missing_removed_with_it(
        tmp_path: Path, embedder: object) -> None:
    from assistant import Assistant, Settings

    corpus = tmp_path / "corpus"
    shutil.copytree(MULTIDOC, corpus)
    a = Assistant(Settings(data_dir=tmp_path / "data", generator="extractive"),
                  embedder=embedder)  # type: ignore[arg-type]
    a.ingest([corpus])
    first = a.index.state()["active"]
    assert KeywordIndex.exists(a.index.keyword_path(first))
    hit = a.retriever.keyword("Lindqvist charter port authorities", 3)
    assert hit and hit[0][0] in a.retriever.bm25.position

    # An index from before keyword indexes were kept on disk: an unchanged ingest makes it.
    shutil.rmtree(a.index.keyword_path(first))
    assert a.ingest([corpus]).embedded_chunks == 0
    assert KeywordIndex.exists(a.index.keyword_path(first))
    # So does a reader that finds none.
    shutil.rmtree(a.index.keyword_path(first))
    a.retriever.refresh(force=True)
    assert a.retriever.keyword("Lindqvist charter port authorities", 3) == hit

    (corpus / "extra.md").write_text("# Extra\n\nA short note about the Zorblat treaty.\n")
    a.ingest([corpus])
    second = a.index.state()["active"]
    assert second != first
    assert not a.index.keyword_path(first).exists()
    assert [p.name for p in a.index.keyword_root.iterdir() if not p.name.startswith(".")] \
        == [second]
    assert a.retriever.keyword("Zorblat treaty", 1)[0][0] in a.retriever.bm25.position
    a.index.reset()
    assert not [p for p in a.index.keyword_root.iterdir() if not p.name.startswith(".")]
