"""The same pipeline against a real `chroma run` server on 127.0.0.1, stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistant import Assistant, Settings
from assistant.embeddings import Embedder
from assistant.store import StoreError

from .conftest import CORPUS

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    chroma = Path(sys.executable).with_name("chroma")
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("chroma run did not start")
            time.sleep(0.3)
        yield url
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
