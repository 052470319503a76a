"""The same pipeline against a real `chroma run` server on 127.0.0.1, stopped by its PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from assistant import Assistant, Settings
from assistant.cli import main
from assistant.embeddings import Embedder
from assistant.locking import ChromaLease
from assistant.store import ChromaIndex, StoreError

from .conftest import CORPUS, chroma_running, free_port

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


CHAT = {"messages": [{"role": "user",
                      "content": "Which port authorities signed the Lindqvist Harbour Charter?"}]}


def stall(pid: int) -> None:
    """SIGSTOP, and wait until every thread has stopped: until the signal is taken, threads
    that are already running keep serving (seen on a loaded machine)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = []
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):  # a thread that just ended
                states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        if states and all(state in "tT" for state in states):
            return
        time.sleep(0.05)
    pytest.fail("the Chroma server did not stop")


@pytest.mark.timeout(300)  # a hang fails here instead of blocking the suite
def test_a_stalled_or_stopped_server_gives_503_json_not_a_hang(
        tmp_path: Path, embedder: Embedder, multidoc_corpus: Path) -> None:
    from fastapi.testclient import TestClient

    from assistant.server.app import make_app

    with chroma_running(tmp_path / "chroma") as (url, proc):
        settings = Settings(data_dir=tmp_path / "data", chroma_url=url, generator="extractive",
                            chroma_timeout_s=2)
        a = Assistant(settings, embedder=embedder)
        assert a.ingest([multidoc_corpus]).ok
        client = TestClient(make_app(a, settings, ui=False), base_url="http://127.0.0.1")
        assert client.get("/api/health").json()["status"] == "ok"
        assert client.post("/api/chat", json=CHAT).status_code == 200

        stall(proc.pid)  # takes connections, never answers
        try:
            for _ in range(2):  # checked every time: never a stale "ok"
                r = client.get("/api/health")
                assert r.status_code == 503
                body = r.json()
                assert body["status"] == "unavailable" and body["store"] == url
                assert url in body["error"] and "no answer within 2 s" in body["error"]
            r = client.post("/api/chat", json=CHAT)
            assert r.status_code == 503 and r.headers["Retry-After"]
            assert url in r.json()["error"] and "no answer within 2 s" in r.json()["error"]
            with pytest.raises(StoreError, match="no answer within 2 s"):
                Assistant(settings, embedder=embedder)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert client.get("/api/health").json()["status"] == "ok"
        assert client.post("/api/chat", json=CHAT).status_code == 200

        proc.terminate()  # stopped for good
        proc.wait(timeout=30)
        for _ in range(3):
            r = client.get("/api/health")
            assert r.status_code == 503 and r.json()["status"] == "unavailable"
            assert url in r.json()["error"]
        for body in (CHAT, {**CHAT, "stream": True}):
            r = client.post("/api/chat", json=body)
            assert r.status_code == 503
            assert r.json()["error"].startswith("The document store is unavailable: ")
            assert url in r.json()["error"]
        r = client.post("/v1/chat/completions", json={"model": "extractive", **CHAT})
        assert r.status_code == 503 and url in r.json()["error"]["message"]


def test_ask_json_reports_a_store_error_as_json(tmp_path: Path, embedder: Embedder,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ASSISTANT_CHROMA_URL", url)
    monkeypatch.setenv("ASSISTANT_GENERATOR", "extractive")
    assert main(["ask", "--json", "What is the NIS Directive?"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"error"} and url in out["error"]


def test_an_expired_lease_is_taken_over_and_its_holder_stops(
        chroma_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"lease{uuid.uuid4().hex[:8]}"
    client = ChromaIndex(tmp_path, chroma_server, name).client
    first = ChromaLease(client, name, chroma_server, ttl_s=1.0, owner="first")
    first.acquire(wait_s=0)
    monkeypatch.setattr(first, "renew", lambda: None)  # the holder stalls: no more renewals
    second = ChromaLease(client, name, chroma_server, ttl_s=30.0, owner="second")
    heard: list[str] = []
    second.acquire(wait_s=60, notify=heard.append)  # waits for the first lease to run out
    assert heard and "(first)" in heard[0]
    with pytest.raises(StoreError, match="lost its lease"):
        first.check()  # so the first ingest stops before its flip
    second.check()
    first.release()  # changes nothing: the lease is no longer its own
    third = ChromaLease(client, name, chroma_server, ttl_s=30.0, owner="third")
    with pytest.raises(StoreError, match=r"another ingest \(second\)"):
        third.acquire(wait_s=0)
    second.release()
    third.acquire(wait_s=0)  # released: free at once
    third.release()
