"""The scale benchmark (`assistant bench --scale`): its corpus, its embedding memo, and one
small run of the whole code path so it cannot rot. No figure is asserted: only that each is
there."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from assistant.evaluation.bench import (
    SCALE_BEGIN,
    SCALE_END,
    MemoEmbedder,
    brochure_sentences,
    write_scaled_corpus,
    write_section,
)

from ..conftest import BROCHURE, CORPUS


def test_a_large_corpus_repeats_its_distinct_documents(tmp_path: Path) -> None:
    sentences = brochure_sentences(BROCHURE.read_text(encoding="utf-8"))
    info = write_scaled_corpus(tmp_path / "c", sentences, 100, distinct=40)
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    originals = [f for f in files if "-copy" not in f]
    assert info == {"chunks": 100, "distinct": 40, "copies": 3}
    assert len(originals) == 2 and len(files) == 5  # 2 x 20 sections, then 3 copies
    assert (tmp_path / "c" / "synthetic-0001-copy002.md").read_bytes() == \
        (tmp_path / "c" / "synthetic-0001.md").read_bytes()
    small = write_scaled_corpus(tmp_path / "s", sentences, 30, distinct=40)
    assert small == {"chunks": 30, "distinct": 30, "copies": 1}


def test_the_memo_embeds_each_distinct_text_once() -> None:
    class Inner:
        name, dimension, backend = "fake", 2, "onnx"

        def __init__(self) -> None:
            self.calls: list[list[str]] = []

        def embed(self, texts: list[str]) -> np.ndarray:
            self.calls.append(list(texts))
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32).reshape(-1, 2)

    inner = Inner()
    memo = MemoEmbedder(inner)
    first = memo.embed(["aa", "b", "aa"])
    second = memo.embed(["b", "ccc"])
    assert inner.calls == [["aa", "b"], ["ccc"]] and memo.embedded == 3
    assert first.tolist() == [[2, 1], [1, 1], [2, 1]] and second.tolist() == [[1, 1], [3, 1]]
    assert memo.embed([]).shape == (0, 2) and memo.backend == "onnx"


def test_the_scale_section_replaces_its_previous_self(tmp_path: Path) -> None:
    report = tmp_path / "bench.md"
    report.write_text("# Performance benchmark\n\nolder figures\n")
    write_section(report, f"{SCALE_BEGIN}\nfirst\n{SCALE_END}\n")
    write_section(report, f"{SCALE_BEGIN}\nsecond\n{SCALE_END}\n")
    text = report.read_text()
    assert "second" in text and "first" not in text and text.count(SCALE_BEGIN) == 1
    assert text.startswith("# Performance benchmark") and "older figures" in text


@pytest.mark.slow
def test_a_small_scale_run_measures_everything(tmp_path: Path, onnx_cache_dir: Path) -> None:
    from assistant import Settings
    from assistant.evaluation import bench

    out = tmp_path / "reports"
    out.mkdir()
    (out / "bench.md").write_text("# Performance benchmark\n\nthe full benchmark's figures\n")
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=CORPUS,
                        onnx_cache_dir=onnx_cache_dir)
    args = argparse.Namespace(scale=[300], questions=4, work_dir=tmp_path / "bench", out=out,
                              rebuild=False, backend_ab=0, reps=1, name=None)
    assert bench.main(args, settings) == 0
    data = json.loads((out / "bench-scale.json").read_text())
    run = data["scales"]["300"]
    assert run["ingest"]["chunks"] == 300 and not run["ingest"]["reused"]
    assert run["ingest"]["backend"] == "onnx" and run["ingest"]["peak_mb"] > 0
    assert run["serve"]["chunks"] == 300 and run["serve"]["peak_mb"] > 0
    assert 0 < run["serve"]["startup_s"] <= run["serve"]["first_answer_s"]
    assert run["latency"]["answer"]["n"] == 4 and run["latency"]["retrieval"]["p50"] > 0
    text = (out / "bench.md").read_text()
    assert "| 300 |" in text and "the full benchmark's figures" in text
    # A second run reuses the index it built.
    assert bench.main(args, settings) == 0
    again = json.loads((out / "bench-scale.json").read_text())["scales"]["300"]
    assert again["ingest"]["reused"] and again["ingest"]["seconds"] == run["ingest"]["seconds"]


def test_the_backend_comparison_alternates_and_reports_the_medians(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant import Settings
    from assistant.evaluation import bench

    order: list[str] = []

    def fake_child(task: str, params: dict[str, object], timeout: float = 0) -> dict[str, object]:
        assert task == "scale_ingest"
        backend = str(params["backend"])
        order.append(backend)
        seconds = {"torch": 100.0, "onnx": 40.0}[backend] + len(order)
        return {"seconds": seconds, "chunks": 40, "texts": 130, "peak_mb": 500.0}

    monkeypatch.setattr(bench, "run_child", fake_child)
    out = tmp_path / "reports"
    args = argparse.Namespace(scale=None, questions=4, work_dir=tmp_path / "bench", out=out,
                              rebuild=False, backend_ab=40, reps=3, name="ab")
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=CORPUS)
    assert bench.main(args, settings) == 0
    assert order == ["torch", "onnx", "onnx", "torch", "torch", "onnx"]
    result = json.loads((out / "ab.json").read_text())["backends"]
    assert result["median_s"] == {"torch": 104.0, "onnx": 43.0}
    assert result["speedup"] == pytest.approx(104 / 43, abs=1e-3)
    assert "torch against ONNX" in (out / "ab.md").read_text()
