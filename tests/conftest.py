"""Shared fixtures. No test touches the real data/ folder: every index lives in a temp dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported for real inside the fixtures: loading them costs seconds
    from assistant import Assistant
    from assistant.embeddings import Embedder, SentenceTransformerEmbedder
    from assistant.llm import LocalLlama

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
BROCHURE = CORPUS / "cyber-diplomacy-in-the-eu.md"
RELATED = next((p for p in (ROOT.parent / "shared" / "related", Path("/work/shared/related"))
                if p.is_dir()), ROOT.parent / "shared" / "related")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings never come from the developer's environment or an assistant.toml."""
    for key in list(os.environ):
        if key.startswith("ASSISTANT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ASSISTANT_CONFIG", str(tmp_path / "no-such-config.toml"))


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    from assistant.embeddings import load_embedder

    return load_embedder("")


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
def brochure_assistant(brochure_data_dir: Path, embedder: Embedder) -> Assistant:
    from assistant import Assistant, Settings

    settings = Settings(data_dir=brochure_data_dir, corpus_dir=CORPUS, generator="extractive")
    return Assistant(settings, embedder=embedder)


@pytest.fixture(scope="session")
def related_dir() -> Iterator[Path]:
    if not RELATED.is_dir():
        pytest.fail(f"the related texts are missing: {RELATED} (tests read them from ../shared)")
    yield RELATED


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
