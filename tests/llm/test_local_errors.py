"""LocalLlama errors that need no real model (fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.llm import LLMError, LocalLlama


def test_missing_model_file(tmp_path: Path) -> None:
    m = LocalLlama(tmp_path / "nope.gguf")
    with pytest.raises(LLMError, match="not found"):
        m.complete([{"role": "user", "content": "hi"}])


def test_not_a_gguf_file(tmp_path: Path) -> None:
    p = tmp_path / "x.gguf"
    p.write_bytes(b"<html>not a model</html>")
    with pytest.raises(LLMError, match="not a GGUF"):
        LocalLlama(p).load()


def test_corrupt_gguf_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.gguf"
    p.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(LLMError, match="could not load model"):
        LocalLlama(p).load()


def test_bad_messages_rejected_before_loading(tmp_path: Path) -> None:
    m = LocalLlama(tmp_path / "nope.gguf")
    with pytest.raises(ValueError, match="role"):
        m.stream([{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match="empty"):
        m.stream([])
