"""CI regression gate: the fast (extractive) configuration over the whole question set.

Fails when a figure falls below eval/thresholds.toml. Uses the session's brochure index
(tests/conftest.py), so nothing is ingested twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant import Settings
from assistant.evaluation.dataset import load_items
from assistant.evaluation.runner import Config, run_assistant
from assistant.evaluation.thresholds import Thresholds

from ..conftest import CORPUS, ROOT

pytestmark = pytest.mark.slow

EVAL = ROOT / "eval"


def test_extractive_configuration_meets_the_regression_thresholds(brochure_data_dir: Path
                                                                  ) -> None:
    thresholds = Thresholds.load(EVAL / "thresholds.toml")
    items = load_items(EVAL / thresholds.question_set)
    config = Config.parse(thresholds.config)
    settings = config.settings(Settings(corpus_dir=CORPUS), brochure_data_dir)
    run = run_assistant(config, items, settings)
    assert not run.skipped, run.skipped
    assert len(run.results) == len(items)
    problems = thresholds.violations(run.summary)
    failing = "\n".join(f"  {r.id}: {r.why} | {r.answer[:100]!r}" for r in run.results if r.why)
    assert not problems, "\n".join(problems) + "\nitems with a problem:\n" + failing
