from pathlib import Path

import pytest

from assistant.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_toml_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "a.toml"
    config.write_text('top_k = 7\nchroma_url = "http://127.0.0.1:9"\n')
    monkeypatch.setenv("ASSISTANT_CONFIG", str(config))
    assert Settings().top_k == 7 and Settings().chroma_url == "http://127.0.0.1:9"
    monkeypatch.setenv("ASSISTANT_TOP_K", "3")
    assert Settings().top_k == 3


def test_the_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_CONFIG", str(ROOT / "ingest" / "assistant.example.toml"))
    s = Settings()
    assert s.chunk_chars == 900 and s.chroma_url == ""
