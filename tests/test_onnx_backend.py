"""The ONNX embedding backend: its vectors are torch's, its batches keep the callers' order,
its export is made once and then needs no torch, and it falls back to torch when it cannot
run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from assistant import embeddings
from assistant.embeddings import OnnxEmbedder, length_order, load_embedder

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "NIS",
    "What is cyber diplomacy?",
    "In 2017, NotPetya ransomware attacks against Maersk caused over $300 million in damages.",
    "Digital risks › Port security\n" + "The EU's cyber sanctions regime lets it impose "
    "travel bans and asset freezes on those behind cyber-attacks. " * 3,
    # longer than the model's 256-token window: both backends cut it at the same place
    "Confidence-building measures between states reduce the risk of conflict. " * 40,
    "",
    "Qu'est-ce que la diplomatie numérique ? Ünïcödé — “quotes” and dashes.",
]


def test_length_order_is_stable_shortest_first() -> None:
    texts = ["ccc", "a", "bb", "x", "dddd"]
    assert length_order(texts) == [1, 3, 2, 0, 4]
    assert length_order([]) == []


@pytest.mark.slow
def test_onnx_vectors_match_torch(embedder: OnnxEmbedder) -> None:
    assert isinstance(embedder, OnnxEmbedder), "the ONNX backend fell back to torch"
    torch_vectors = load_embedder("", "torch").embed(TEXTS)
    onnx_vectors = embedder.embed(TEXTS)
    assert onnx_vectors.shape == torch_vectors.shape == (len(TEXTS), 384)
    cosines = (onnx_vectors * torch_vectors).sum(axis=1)
    assert cosines.min() > 0.999
    assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_batching_by_length_keeps_the_callers_order(embedder: OnnxEmbedder) -> None:
    one_by_one = np.stack([embedder.embed([t])[0] for t in TEXTS])
    small_batches = OnnxEmbedder.__new__(OnnxEmbedder)
    small_batches.__dict__.update(embedder.__dict__, batch_size=2)  # several padded batches
    for vectors in (embedder.embed(TEXTS), small_batches.embed(TEXTS),
                    small_batches.embed(TEXTS[::-1])[::-1]):
        assert ((vectors * one_by_one).sum(axis=1) > 0.9999).all()
    assert embedder.embed([]).shape == (0, 384)


@pytest.mark.slow
def test_the_export_is_cached_and_then_needs_no_torch(embedder: OnnxEmbedder,
                                                      onnx_cache_dir: Path) -> None:
    exported = embedder.model_dir / "model.onnx"
    assert exported.parent.parent == onnx_cache_dir
    made = exported.stat().st_mtime_ns
    again = load_embedder.__wrapped__("", "onnx", onnx_cache_dir)
    assert isinstance(again, OnnxEmbedder) and again.model_dir == embedder.model_dir
    assert exported.stat().st_mtime_ns == made  # not exported again
    code = ("import sys; from pathlib import Path; from assistant.embeddings import "
            f"load_embedder; e = load_embedder('', 'onnx', Path({str(onnx_cache_dir)!r})); "
            "v = e.embed(['hello']); "
            "print(type(e).__name__, 'torch' in sys.modules, round(float(v[0] @ v[0]), 4))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    assert out == ["OnnxEmbedder", "False", "1.0"]


def test_a_failed_export_falls_back_to_torch(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("no exporter here")

    class Torch:
        backend, name, dimension = "torch", "all-MiniLM-L6-v2", 384

        def __init__(self, path: str = "") -> None:
            pass

    monkeypatch.setattr(embeddings, "export_onnx", broken)
    monkeypatch.setattr(embeddings, "SentenceTransformerEmbedder", Torch)
    got = load_embedder.__wrapped__("", "onnx", tmp_path / "onnx")
    assert isinstance(got, Torch)
    assert not [p for p in (tmp_path / "onnx").iterdir() if p.is_dir()]  # nothing half-made
    with pytest.raises(FileNotFoundError):
        load_embedder.__wrapped__(str(tmp_path / "no-such-model"), "onnx", tmp_path / "onnx")
