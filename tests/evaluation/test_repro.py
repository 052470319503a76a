"""`assistant bench-repro`'s comparison and report (no model, no index)."""

from __future__ import annotations

from typing import Any

from assistant.evaluation.repro import compare, markdown


def _answer(text: str, p_yes: list[float], start: int = 0) -> dict[str, Any]:
    return {"answer": text, "refused": False, "citations": [["a.md", start, start + 10]],
            "p_yes": p_yes}


def test_answers_and_self_checks_that_differ_between_the_orders_are_counted() -> None:
    first = {"q1": _answer("Dyn [1].", [0.91]), "q2": _answer("In 2017 [1].", [0.8]),
             "q3": _answer("Yes [1].", []), "q4": _answer("Ten [1].", [0.5])}
    second = {"q1": _answer("Dyn [1].", [0.91]), "q2": _answer("In 2017 [1].", [0.8000001]),
              "q3": _answer("Yes [1].", [], start=5), "q4": _answer("Eleven [1].", [0.5])}
    s = compare(["q1", "q2", "q3", "q4"], first, second)
    assert s["answers_changed"] == 2 and s["changed"] == ["q3", "q4"]
    assert s["self_checks"] == 3 and s["moved"] == ["q2"]
    s.update(peak_rss_mb=1900, seconds=12.5)
    md = markdown({"meta": {"command": "assistant bench-repro --limit 4", "commit": "abc",
                            "generated": "2026-12-08 00:00 UTC", "set": "questions.jsonl"},
                   "summary": s})
    assert "| answers (text, refusal or citations) | 2 of 4 |" in md
    assert "| self-check P(yes), any digit | 1 of 3 questions with a self-check |" in md
    assert "Changed answers: q3, q4." in md
