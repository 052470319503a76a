"""`assistant eval` end to end on a few items, and the llama-index baseline over our index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant import Settings
from assistant.cli import main
from assistant.evaluation.baseline import NaiveBaseline
from assistant.evaluation.dataset import load_items
from assistant.llm import Usage

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
    code = main(["eval", "--config", "extractive", "--set", str(ROOT / "eval" / "questions.jsonl"),
                 "--only", "fact-01", "follow-01", "adv-04", "unans-01", "--out", str(out),
                 "--failures", str(tmp_path / "failures.txt"), "--no-support-validation"])
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


class FakeChatModel:
    """A ChatModel (assistant.llm.base) that streams a fixed reply and records the prompt."""

    name = "fake"
    last_usage: Usage | None = None

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list[list[dict[str, str]]] = []

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int = 256,
               temperature: float = 0.0, stop: list[str] | None = None,
               timeout_s: float | None = None) -> Iterator[str]:
        self.prompts.append(messages)
        yield from self.reply.split(" ")[:1]
        for word in self.reply.split(" ")[1:]:
            yield " " + word

    def complete(self, messages: list[dict[str, str]], **kw: Any) -> str:
        return "".join(self.stream(messages, **kw))


def test_generator_baseline_streams_through_the_custom_llm_adapter(brochure_data_dir: Path
                                                                   ) -> None:
    items = {i.id: i for i in load_items(ROOT / "eval" / "questions.jsonl")}
    model = FakeChatModel("Maersk was hit by NotPetya in 2017 [1].")
    baseline = NaiveBaseline(Settings(data_dir=brochure_data_dir, corpus_dir=CORPUS,
                                      generator="local", llm_context_passages=3), model)
    r = baseline.evaluate(items["fact-01"])
    assert r.answer == "Maersk was hit by NotPetya in 2017 [1]." and r.correct
    assert r.ttft_ms is not None and r.total_ms is not None and r.ttft_ms <= r.total_ms
    assert r.citations and r.citations[0]["id"] == 1
    prompt = "\n".join(m["content"] for m in model.prompts[0])
    assert "NotPetya" in prompt and "Which company was hit" in prompt  # retrieved context
    refusal = FakeChatModel("The context does not provide this information.")
    other = NaiveBaseline(Settings(data_dir=brochure_data_dir, generator="local"), refusal)
    assert other.evaluate(items["unans-01"]).refused
