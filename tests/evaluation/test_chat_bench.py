"""Unit tests of `assistant bench-chat`'s pure parts (no model, no index)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from assistant.evaluation.chat_bench import (
    Measure,
    RecordingModel,
    compare,
    engine_refused,
    item_table,
    rerender,
    select_items,
    summarise,
    table,
    verdict,
)
from assistant.evaluation.dataset import Item


def _m(pipeline: str, id_: str, ttft: float, total: float, tokens: int | None,
       correct: bool, expect: str = "answer", called: bool = True) -> Measure:
    return Measure(pipeline, id_, "fact", "q?", expect, correct=correct, ttft_ms=ttft,
                   total_ms=total, prompt_tokens=tokens, prompt_tokens_all=tokens or 0,
                   model_called=called, cached_tokens=10 if called else None)


def test_summary_table_and_targets() -> None:
    a = [_m("a", "f1", 1000, 3000, 300, True), _m("a", "f2", 2000, 4000, 400, True),
         _m("a", "u1", 5, 5, 0, True, "refuse", called=False)]
    b = [_m("b", "f1", 6000, 9000, 1200, True), _m("b", "f2", 8000, 12000, 1400, False),
         _m("b", "u1", 7000, 8000, 1300, False, "refuse")]
    sa, sb = summarise(a), summarise(b)
    assert sa["items"] == 3 and sa["answerable"] == 2 and sa["refuse"] == 1
    assert sa["model_called"] == 2
    assert sa["prompt_tokens_mean"] == 350  # the gate-refused item does not count
    assert sa["must_contain_accuracy"] == 1.0 and sa["refusal_accuracy"] == 1.0
    assert sb["must_contain_correct"] == 1 and sb["refusal_accuracy"] == 0.0
    assert sa["ttft_p50_ms"] == 1000 and sb["ttft_p50_ms"] == 7000
    assert sa["ttft_answerable_p50_ms"] == 1500

    c = compare(sa, sb)
    assert abs(c["ttft_ratio_p50"] - 1000 / 7000) < 1e-9
    assert c["ttft_ratio_met"] and c["warm_ttft_p50_met"] and c["warm_ttft_p95_met"]
    assert c["correctness_met"]

    md = table(sa, sb)
    assert md.splitlines()[0].startswith("| | (a) this pipeline | (b) llama-index")
    assert "| TTFT p50 / p95 (s) | 1.00 / " in md
    assert "must-contain accuracy (answerable) | 1.00 (2/2) | 0.50 (1/2) |" in md
    assert "| questions that reached the model | 2/3 | 3/3 |" in md
    lines = verdict(c, sa)
    assert "target <= 0.33: met" in lines[0] and "NOT" not in " ".join(lines)

    rows = item_table(a + b).splitlines()
    assert len(rows) == 2 + 3  # header, rule, one row per item
    assert "0 (no model)" in rows[-1] and "no: " in rows[-1]


def test_targets_not_met() -> None:
    sa = summarise([_m("a", "f1", 6000, 9000, 800, False)])
    sb = summarise([_m("b", "f1", 9000, 12000, 900, True)])
    c = compare(sa, sb)
    assert not c["ttft_ratio_met"] and not c["warm_ttft_p50_met"]
    assert not c["correctness_met"]
    assert verdict(c, sa)[0].endswith("NOT met")


def test_empty_summary() -> None:
    s = summarise([])
    assert s["ttft_p50_ms"] is None and s["must_contain_accuracy"] is None
    assert compare(s, s)["ttft_ratio_p50"] is None
    assert "–" in table(s, s)


def test_select_items_is_stratified_and_fixed() -> None:
    items = [Item(id=f"{c}-{n}", category=c, question=f"{c} {n}?")
             for c in ("fact", "number", "list") for n in range(10)]
    items += [Item(id=f"follow-{n}", category="followup", question="And it?",
                   history=["What is X?"]) for n in range(5)]
    items += [Item(id=f"{c}-{n}", category=c, question=f"{c} {n}?", answerable=False,
                   expect="refuse") for c in ("unanswerable", "adversarial") for n in range(5)]
    items.append(Item(id="blank", category="adversarial", question="  ", answerable=False,
                      expect="refuse"))
    chosen = select_items(items, answerable=8, followups=2, refuse=4)
    ids = [i.id for i in chosen]
    assert ids == [i.id for i in select_items(items, answerable=8, followups=2, refuse=4)]
    assert sum(i.is_followup for i in chosen) == 2
    assert sum(not i.expects_refusal for i in chosen) == 8
    assert {i.category for i in chosen if not i.history and not i.expects_refusal} == {
        "fact", "number", "list"}
    assert sum(i.category == "unanswerable" for i in chosen) == 2
    assert sum(i.category == "adversarial" for i in chosen) == 2
    assert "blank" not in ids
    order = [i.id for i in items]
    assert ids == sorted(ids, key=order.index)


def test_engine_refused() -> None:
    assert engine_refused("I couldn't find this in the documents.")
    assert engine_refused("The context does not mention ENISA's budget.")
    assert engine_refused("Don't know.")
    assert not engine_refused("Maersk was hit by NotPetya in 2017.")
    assert not engine_refused("")


class _Fake:
    name = "local:fake"
    n_ctx = 2048

    def __init__(self) -> None:
        self.last_usage: dict[str, int] | None = None
        self.last_timings: dict[str, float] | None = None

    def stream(self, messages: list[dict[str, str]], **kwargs: object) -> Iterator[str]:
        yield "Hello"
        yield " there"
        self.last_usage = {"prompt_tokens": len(messages) * 10, "completion_tokens": 2}
        self.last_timings = {"cache_n": 5, "prompt_n": 7, "prompt_ms": 100.0}

    def complete(self, messages: list[dict[str, str]], **kwargs: object) -> str:
        return "".join(self.stream(messages, **kwargs))


def test_recording_model_notes_every_call() -> None:
    rec = RecordingModel(_Fake())
    assert rec.name == "local:fake" and rec.n_ctx == 2048
    assert "".join(rec.stream([{"role": "user", "content": "x"}])) == "Hello there"
    assert rec.complete([{"role": "system", "content": "s"},
                         {"role": "user", "content": "x"}]) == "Hello there"
    calls = rec.take()
    assert [c["usage"]["prompt_tokens"] for c in calls] == [10, 20]
    assert calls[0]["timings"]["cache_n"] == 5
    assert rec.take() == []
    assert rec.last_usage == {"prompt_tokens": 20, "completion_tokens": 2}


def test_rerender_rebuilds_the_report_from_json(tmp_path: Path) -> None:
    rows = [_m("a", "f1", 1000, 2000, 200, False), _m("b", "f1", 4000, 5000, 700, True)]
    rows[0].why = "missing 'X'; evidence not retrieved in top 10"
    path = tmp_path / "chat_bench.json"
    path.write_text(json.dumps({"meta": {"command": "assistant bench-chat"}, "summary": {},
                                "comparison": {}, "items": [m.to_json() for m in rows]}))
    result = rerender(path)
    assert result["summary"]["a"]["ttft_p50_ms"] == 1000
    assert result["comparison"]["ttft_ratio_p50"] == 0.25
    assert result["items"][0]["why"] == "missing 'X'"
    md = (tmp_path / "chat_bench.md").read_text()
    assert "- command: assistant bench-chat" in md and "| f1 | fact |" in md
    assert json.loads(path.read_text())["summary"]["b"]["correct"] == 1
