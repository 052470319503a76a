"""Configuration parsing, thresholds, the support-check validation, the synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.citations import SUPPORT_THRESHOLD
from assistant.evaluation.bench import brochure_sentences, write_synthetic_corpus
from assistant.evaluation.dataset import load_support_pairs
from assistant.evaluation.runner import Config
from assistant.evaluation.support_check import confusion, proposed_supports, validate
from assistant.evaluation.thresholds import Thresholds

from ..conftest import BROCHURE, ROOT


def test_config_parsing() -> None:
    c = Config.parse("extractive:hybrid=false,top_k=3")
    assert c.generator == "extractive" and dict(c.overrides) == {"hybrid": False, "top_k": 3}
    assert not c.baseline
    assert Config.parse("local").generator == "local"
    b = Config.parse("baseline:local")
    assert b.baseline and b.generator == "local"
    assert Config.parse("baseline").generator == "extractive"
    assert Config.parse("extractive:embedding_model=/models/mpnet").embedding_model == \
        "/models/mpnet"
    for bad in ("gpt5", "extractive:nonsense=1", "extractive:top_k", "extractive:data_dir=/x"):
        with pytest.raises(ValueError):
            Config.parse(bad)


def test_config_settings_are_validated_types(tmp_path: Path) -> None:
    from assistant import Settings

    s = Config.parse("extractive:hybrid=false,candidates=40").settings(Settings(), tmp_path)
    assert s.hybrid is False and s.candidates == 40 and s.data_dir == tmp_path
    assert s.generator == "extractive"


def test_thresholds(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('config = "extractive"\n[min]\n"hit@5" = 0.9\n[max]\ncrashes = 0\n')
    t = Thresholds.load(path)
    assert t.violations({"hit@5": 0.95, "crashes": 0}) == []
    assert len(t.violations({"hit@5": 0.5, "crashes": 1})) == 2
    assert t.violations({"crashes": 0})  # a missing figure is a violation
    committed = Thresholds.load(ROOT / "eval" / "thresholds.toml")
    assert committed.config == "extractive" and committed.minimum


def test_confusion_counts() -> None:
    c = confusion([True, True, False, False], [True, False, True, False])
    assert (c.tp, c.fn, c.fp, c.tn) == (1, 1, 1, 1)
    assert c.accuracy == 0.5 and c.precision == 0.5 and c.recall == 0.5


def test_proposed_check_guards() -> None:
    passage = "At least two-thirds of all states worldwide already make use of the Convention."
    assert proposed_supports("Two-thirds of all states make use of the Convention.", passage)
    assert not proposed_supports("Half of all states make use of the Convention.", passage)
    assert not proposed_supports("States do not make use of the Convention.", passage)
    assert not proposed_supports("Only two-thirds of states make use of the Convention.",
                                 passage)


def test_support_validation_report_shape() -> None:
    v = validate(load_support_pairs(ROOT / "eval" / "support_pairs.jsonl"))
    assert v["pairs"] == 48 and v["threshold"] == pytest.approx(SUPPORT_THRESHOLD)
    assert v["in_use"]["precision"] >= v["lexical"]["precision"]
    assert {"uns-23", "uns-24", "uns-25", "sup-23"}.isdisjoint(v["in_use"]["errors"])
    assert 0 < v["lexical"]["accuracy"] <= 1
    assert v["proposed"]["precision"] >= v["lexical"]["precision"]
    assert len(v["lexical_sweep"]) >= 10 and "embedding_sweep" not in v


def test_synthetic_corpus_is_deterministic_and_one_chunk_per_section(tmp_path: Path) -> None:
    from assistant.chunking import chunk_document
    from assistant.documents import load_document

    sentences = brochure_sentences(BROCHURE.read_text(encoding="utf-8"))
    assert len(sentences) > 50
    n = write_synthetic_corpus(tmp_path / "a", sentences, 60, sections_per_doc=20)
    write_synthetic_corpus(tmp_path / "b", sentences, 60, sections_per_doc=20)
    files = sorted((tmp_path / "a").glob("*.md"))
    assert n == 60 and len(files) == 3
    assert [f.read_text() for f in files] == \
        [f.read_text() for f in sorted((tmp_path / "b").glob("*.md"))]
    chunks = [c for f in files for c in chunk_document(load_document(f, f.name))]
    assert len(chunks) == 60


def test_sample_spreads_over_categories_deterministically() -> None:
    from assistant.evaluation.dataset import load_items
    from assistant.evaluation.runner import sample

    items = load_items(ROOT / "eval" / "questions.jsonl")
    picked = sample(items, 18)
    assert len(picked) == 18 and picked == sample(items, 18)
    assert len({i.category for i in picked}) == len({i.category for i in items})
    order = [i.id for i in items]
    assert [order.index(i.id) for i in picked] == sorted(order.index(i.id) for i in picked)


def test_report_round_trip(tmp_path: Path) -> None:
    from assistant.evaluation import report
    from assistant.evaluation.dataset import Item
    from assistant.evaluation.runner import RunResult
    from assistant.evaluation.scoring import score_item, summarise

    item = Item(id="a", category="fact", question="q?", must_contain=["Maersk"],
                evidence=["Maersk"], reference="Maersk.")
    r = score_item(item, answer="Maersk was hit [1].", refused=False,
                   citations={1: "Maersk was hit hard."}, retrieved=["Maersk was hit hard."])
    r.ttft_ms = r.total_ms = 12.0
    run = RunResult(config=Config.parse("extractive"), results=[r], summary=summarise([r]))
    paths = report.write(tmp_path, "eval-x", "Evaluation: x", [run], {"set": "x"}, None)
    assert "| Must-contain accuracy (answerable) | 1.000 |" in paths["markdown"].read_text()
    runs, meta, support = report.load_runs(paths["json"])
    assert meta == {"set": "x"} and support is None
    assert runs[0].summary["must_contain_accuracy"] == 1.0
    assert runs[0].summary["refusal_precision"] is None  # no refusals: undefined
