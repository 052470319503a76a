"""Regression thresholds (eval/thresholds.toml): which summary figures may not get worse."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    config: str = "extractive"
    question_set: str = "questions.jsonl"
    minimum: dict[str, float] = field(default_factory=dict)
    maximum: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Thresholds:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return cls(config=data.get("config", "extractive"),
                   question_set=data.get("set", "questions.jsonl"),
                   minimum={k: float(v) for k, v in data.get("min", {}).items()},
                   maximum={k: float(v) for k, v in data.get("max", {}).items()})

    def violations(self, summary: dict[str, Any]) -> list[str]:
        out = []
        for key, bound in self.minimum.items():
            value = summary.get(key)
            if value is None or value != value or value < bound:
                out.append(f"{key} = {value} is below the threshold {bound}")
        for key, bound in self.maximum.items():
            value = summary.get(key)
            if value is None or value != value or value > bound:
                out.append(f"{key} = {value} is above the threshold {bound}")
        return out
