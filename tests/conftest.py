"""Shared fixtures. No test touches the real data/ folder: every index lives in a temp dir."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported for real inside the fixtures: loading them costs seconds
    from assistant import Assistant
    from assistant.embeddings import Embedder
    from assistant.llm import LocalLlama

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
BROCHURE = CORPUS / "cyber-diplomacy-in-the-eu.md"
# A few short invented documents: the multi-document tests need nothing outside the repo.
MULTIDOC = Path(__file__).resolve().parent / "fixtures" / "multidoc"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture(scope="session")
def onnx_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this session's tests keep the ONNX export of the embedding model (made once)."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                       onnx_cache_dir: Path) -> None:
    """Settings never come from the developer's environment or an assistant.toml. Every
    assistant of the session, in-process or a child process, shares one ONNX export."""
    for key in list(os.environ):
        if key.startswith("ASSISTANT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ASSISTANT_CONFIG", str(tmp_path / "no-such-config.toml"))
    monkeypatch.setenv("ASSISTANT_ONNX_CACHE_DIR", str(onnx_cache_dir))


@pytest.fixture(scope="session")
def embedder(onnx_cache_dir: Path) -> Embedder:
    """The default embedding backend (ONNX), as the assistant loads it."""
    from assistant.embeddings import load_embedder

    return load_embedder("", "onnx", onnx_cache_dir)


@pytest.fixture(scope="session")
def brochure_data_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A data dir whose embedded Chroma index holds the brochure (built once per session)."""
    from assistant import Assistant, Settings

    data = tmp_path_factory.mktemp("brochure-data")
    assistant = Assistant(Settings(data_dir=data, corpus_dir=CORPUS), embedder=embedder)
    report = assistant.ingest()
    assert report.ok and report.chunks > 20
    return data


@pytest.fixture
def make(brochure_data_dir: Path, embedder: Embedder) -> Callable[[Any], Assistant]:
    """An assistant over the brochure index that answers with the given (fake) chat model."""
    from assistant import Assistant, Settings

    def build(model: Any) -> Assistant:
        settings = Settings(data_dir=brochure_data_dir, corpus_dir=CORPUS, generator="local")
        return Assistant(settings, embedder=embedder, chat_model=model)

    return build


@pytest.fixture
def brochure_assistant(brochure_data_dir: Path, embedder: Embedder) -> Assistant:
    from assistant import Assistant, Settings

    settings = Settings(data_dir=brochure_data_dir, corpus_dir=CORPUS, generator="extractive")
    return Assistant(settings, embedder=embedder)


@dataclass(frozen=True)
class CollectionsData:
    """A data dir with two collections: `default` (its corpus folder: the harbour charter and
    the river compact) and `ferries` (the ferry guidelines)."""

    data_dir: Path
    corpus_dir: Path
    ferries_dir: Path


FERRY_QUESTION = "What does the Saltholm data ferry carry?"  # only `ferries` can answer
CHARTER_QUESTION = "Which port authorities signed the Lindqvist Harbour Charter?"  # only default


def build_collections(root: Path, embedder: Embedder) -> CollectionsData:
    from assistant import Assistant, Settings

    corpus, ferries, data = root / "corpus", root / "ferries", root / "data"
    corpus.mkdir(parents=True)
    ferries.mkdir()
    for name in ("harbour-charter.md", "river-compact.md"):
        shutil.copy(MULTIDOC / name, corpus / name)
    shutil.copy(MULTIDOC / "ferry-guidelines.txt", ferries / "ferry-guidelines.txt")
    assistant = Assistant(Settings(data_dir=data, corpus_dir=corpus, generator="extractive"),
                          embedder=embedder)
    assert assistant.ingest().ok
    assert assistant.ingest([ferries], collection="ferries").ok
    return CollectionsData(data, corpus, ferries)


@pytest.fixture(scope="session")
def collections_data(tmp_path_factory: pytest.TempPathFactory,
                     embedder: Embedder) -> CollectionsData:
    """Built once per session; tests must not change it (copy it, or build their own)."""
    return build_collections(tmp_path_factory.mktemp("collections"), embedder)


@pytest.fixture
def multidoc_corpus(tmp_path: Path) -> Path:
    """A writable copy of the small multi-document corpus (tests may change its files)."""
    target = tmp_path / "multidoc"
    shutil.copytree(MULTIDOC, target)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def chroma_running(path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real `chroma run` server on a free loopback port; stopped by its PID afterwards."""
    import httpx

    port = free_port()
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
        yield url, proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # in case a test left it stopped
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Chroma server for the session; tests keep apart by collection name."""
    with chroma_running(tmp_path_factory.mktemp("chroma-server")) as (url, _):
        yield url


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The packaged local model, assembled and verified once into <repo>/data/models.

    Not a temp dir: the file is 1.1 GB. Fails (never skips) when the parts are missing.
    """
    from assistant.llm.local_model import assemble_model, default_model_path, missing_part_modules

    missing = missing_part_modules()
    if missing:
        pytest.fail(f"model part packages missing (e.g. {missing[0]}): pip install '.[model]'")
    return assemble_model(default_model_path(ROOT / "data").parent)


@pytest.fixture(scope="session")
def local_model(model_path: Path) -> Iterator[LocalLlama]:
    """One in-process llama.cpp model per test session (loading costs seconds)."""
    from assistant.llm import LocalLlama

    model = LocalLlama(model_path, n_threads=2, max_queue=4)
    model.load()
    yield model
    model.close()
