"""Question sets and labelled support pairs (schema: eval/README.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MustContain = list[str | list[str]]


@dataclass(frozen=True)
class Item:
    id: str
    category: str
    question: str
    history: list[str] = field(default_factory=list)  # earlier user turns, asked first
    answerable: bool = True
    reference: str = ""
    must_contain: MustContain = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)  # verbatim spans of the corpus
    expect: str = "answer"  # "answer" | "refuse"
    document: str = ""  # related set: the file the evidence comes from

    @property
    def expects_refusal(self) -> bool:
        return self.expect == "refuse"

    @property
    def is_followup(self) -> bool:
        return bool(self.history)


@dataclass(frozen=True)
class SupportPair:
    id: str
    sentence: str
    passage: str
    supported: bool
    note: str = ""


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON: {exc}") from exc
    return rows


def load_items(path: Path) -> list[Item]:
    items = []
    for row in _read_jsonl(path):
        items.append(Item(
            id=row["id"], category=row["category"], question=row["question"],
            history=list(row.get("history", [])), answerable=bool(row.get("answerable", True)),
            reference=row.get("reference", ""), must_contain=list(row.get("must_contain", [])),
            evidence=list(row.get("evidence", [])), expect=row.get("expect", "answer"),
            document=row.get("document", ""),
        ))
    ids = [i.id for i in items]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path}: duplicate item ids")
    return items


def load_support_pairs(path: Path) -> list[SupportPair]:
    return [SupportPair(id=r["id"], sentence=r["sentence"], passage=r["passage"],
                        supported=bool(r["supported"]), note=r.get("note", ""))
            for r in _read_jsonl(path)]


def default_eval_dir() -> Path:
    """eval/ of the source checkout (the package lives in src/assistant/evaluation)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "eval" / "questions.jsonl").is_file():
            return parent / "eval"
    return Path("eval")


def related_dir(root: Path | None = None) -> Path | None:
    """The related texts: $ASSISTANT_SHARED_DIR/related, else ../shared/related next to the
    checkout (`root`, default: the checkout this package runs from); None when neither is
    there (the evaluation then says what is missing)."""
    import os

    base = root or default_eval_dir().parent
    candidates = [Path(os.environ["ASSISTANT_SHARED_DIR"]) / "related"] \
        if os.environ.get("ASSISTANT_SHARED_DIR") else []
    candidates.append(base.parent / "shared" / "related")
    return next((c for c in candidates if c.is_dir()), None)
