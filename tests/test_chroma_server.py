"""The same pipeline against a real `chroma run` server on 127.0.0.1, stopped by its PID."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant import Assistant, Settings
from assistant.embeddings import Embedder
from assistant.store import StoreError

from .conftest import CORPUS, free_port

pytestmark = pytest.mark.slow


def test_ingest_and_answer_through_a_chroma_server(chroma_server: str, tmp_path: Path,
                                                   embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path, corpus_dir=CORPUS, chroma_url=chroma_server,
                        generator="extractive")
    a = Assistant(settings, embedder=embedder)
    report = a.ingest()
    assert report.ok and report.chunks > 20
    assert not (tmp_path / "chroma").exists()  # nothing went to the embedded store
    assert a.ingest().embedded_chunks == 0  # incremental against the server too
    assert a.index.has_sentences() and report.embedded_sentences > report.chunks
    # Sentence search runs on the server too: a paraphrase of one sentence finds its chunk.
    spyware = "Why does the EU care about spying software being sold abroad?"
    assert any("surveillance" in p.text for p in a.retriever.retrieve(spyware, 5))
    ans = a.ask("How much did the NotPetya attack cost Maersk?")
    assert any("300 million" in c.text for c in ans.citations)
    # A second client (another process, in a real deployment) sees the same index.
    other = Assistant(settings, embedder=embedder)
    assert other.health()["chunks"] == report.chunks and other.health()["store"] == "server"


def test_a_server_that_is_down_gives_a_clear_error(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path, chroma_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError, match="Chroma"):
        Assistant(settings, embedder=embedder)
