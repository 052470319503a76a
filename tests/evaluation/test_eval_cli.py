"""`assistant eval` end to end on a few items, and the llama-index baseline over our index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant import Settings
from assistant.cli import main
from assistant.evaluation.baseline import NaiveBaseline
from assistant.evaluation.dataset import load_items

from ..conftest import CORPUS, ROOT

pytestmark = pytest.mark.slow


def test_baseline_reads_the_assistants_collection(brochure_data_dir: Path) -> None:
    items = {i.id: i for i in load_items(ROOT / "eval" / "questions.jsonl")}
    baseline = NaiveBaseline(Settings(data_dir=brochure_data_dir, corpus_dir=CORPUS))
    r = baseline.evaluate(items["fact-01"])
    assert r.rank == 1 and r.correct and r.answer.endswith("[1].")
    assert r.citation_recall == 1.0
    junk = baseline.evaluate(items["adv-03"])  # a naive engine answers anything
    assert not junk.refused and not junk.correct


def test_eval_command_writes_the_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ASSISTANT_CORPUS_DIR", str(CORPUS))
    out = tmp_path / "reports"
    code = main(["eval", "--config", "extractive", "--only", "fact-01",
                 "follow-01", "adv-04", "unans-01", "--out", str(out), "--failures",
                 str(tmp_path / "failures.txt"), "--no-support-validation"])
    assert code == 0
    md = (out / "eval-questions.md").read_text()
    assert "| Must-contain accuracy (answerable) |" in md and "`baseline`" in md
    assert (out / "eval-questions.png").stat().st_size > 10_000
    data = json.loads((out / "eval-questions.json").read_text())
    runs = {r["config"]: r for r in data["runs"]}
    assert [i["id"] for i in runs["extractive"]["items"]] == ["fact-01", "unans-01", "adv-04",
                                                              "follow-01"]
    empty = next(i for i in runs["extractive"]["items"] if i["id"] == "adv-04")
    assert empty["refused"] and empty["correct"]  # InputError counts as a rejection
    assert runs["baseline"]["summary"]["items"] == 4
    assert (tmp_path / "failures.txt").exists()
    assert "report:" in capsys.readouterr().out
