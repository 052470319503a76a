"""Unit tests for the evaluation metrics (pure functions, no model)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from assistant.evaluation import metrics
from assistant.evaluation.dataset import Item
from assistant.evaluation.scoring import score_item, summarise


def test_normalise_strips_markdown_quotes_and_space() -> None:
    assert metrics.normalise("The **Budapest   Convention**\non Cyber’s") == \
        "the budapest convention on cyber's"
    assert metrics.normalise("*emphasis* and 5 * 3") == "emphasis and 5 * 3"


def test_span_inside_passage_with_bold_markers_on_one_side() -> None:
    passage = "- **64** parties\n- Over **140** EU delegations"
    assert metrics.contains("**64** parties", passage)
    assert metrics.contains("64 parties", passage)
    assert not metrics.contains("65 parties", passage)


def test_span_cut_by_a_chunk_boundary() -> None:
    span = "the quick brown fox jumps over the lazy dog"
    end_of_chunk = "Some text before. the quick brown fox jumps"
    start_of_chunk = "over the lazy dog. And more."
    assert metrics.span_coverage(span, end_of_chunk) == pytest.approx(
        len("the quick brown fox jumps") / len(span))
    assert metrics.contains(span, end_of_chunk)
    assert not metrics.contains(span, start_of_chunk)  # under half of the span
    assert metrics.span_coverage(span, "unrelated words entirely") == 0.0


def test_ranks_hits_and_mrr() -> None:
    passages = ["alpha beta", "gamma delta", "epsilon zeta"]
    ranks = metrics.evidence_ranks(["gamma delta", "epsilon", "omega"], passages)
    assert ranks == [2, 3, None]
    first = metrics.first_relevant(ranks)
    assert first == 2
    assert not metrics.hit_at(first, 1) and metrics.hit_at(first, 3)
    assert metrics.reciprocal_rank(first) == 0.5
    assert metrics.reciprocal_rank(None) == 0.0
    assert metrics.evidence_recall_at(ranks, 2) == pytest.approx(1 / 3)


def test_must_contain_with_alternatives_is_case_insensitive() -> None:
    must = ["Maersk", ["4,000", "4000"]]
    assert metrics.must_contain_ok("MAERSK reinstalled 4000 servers [1].", must)
    assert metrics.must_contain_hits("Maersk only", must) == [True, False]
    assert metrics.must_contain_ok("anything", [])


def test_token_f1() -> None:
    assert metrics.token_f1("The Mirai botnet [1].", "Mirai botnet") == 1.0
    assert metrics.token_f1("Mirai", "the Mirai botnet") == pytest.approx(2 / 3)
    assert metrics.token_f1("nothing here", "Mirai") == 0.0


def test_answer_sentences_attach_leading_markers_to_the_previous_sentence() -> None:
    got = metrics.answer_sentences("First claim. [1] Second claim [2, 3]. [4]")
    assert got == [("First claim.", [1]), ("Second claim.", [2, 3, 4])]


def _support(sentence: str, passage: str) -> bool:
    """A toy check: every word of the sentence occurs in the passage."""
    return set(sentence.lower().rstrip(".").split()) <= set(passage.lower().split())


def test_alce_recall_and_precision() -> None:
    passages = {1: "cats purr", 2: "dogs bark", 3: "cats purr loudly", 4: "birds"}
    # sentence 1: [1] alone supports -> precise. sentence 2: needs [1] and [2] jointly:
    # both precise. sentence 3: [3] supports alone, [4] is irrelevant (removing it keeps
    # support). sentence 4: unsupported -> its citation is imprecise. sentence 5: uncited.
    answer = ("Cats purr [1]. Cats purr dogs bark [1][2]. Cats purr loudly [3][4]. "
              "Fish swim [4]. Nothing cited here.")
    checks = metrics.check_citations(answer, passages, _support)
    assert [c.supported for c in checks] == [True, True, True, False, False]
    assert [c.precise for c in checks] == [[True], [True, True], [True, False], [False], []]
    assert metrics.citation_recall(checks) == pytest.approx(3 / 5)
    assert metrics.citation_precision(checks) == pytest.approx(4 / 6)


def test_marker_to_a_missing_passage_is_unsupported() -> None:
    checks = metrics.check_citations("Cats purr [7].", {1: "cats purr"}, _support)
    assert not checks[0].supported and checks[0].precise == [False]


def test_refusal_scores() -> None:
    rows = [(True, True, False), (True, False, False), (False, True, True), (False, False, True),
            (False, False, True), (False, False, True)]
    s = metrics.refusal_scores(rows)
    assert s.recall == 0.5 and s.precision == 0.5 and s.wrongly_refused == 0.25


def test_percentile_matches_linear_interpolation() -> None:
    assert metrics.percentile([1, 2, 3, 4], 50) == 2.5
    assert metrics.percentile([10], 95) == 10
    assert metrics.percentile([0, 100], 95) == pytest.approx(95)
    assert math.isnan(metrics.percentile([], 50))


def _item(**kw: Any) -> Item:
    base: dict[str, Any] = dict(id="x", category="fact", question="q?", must_contain=["Maersk"],
                evidence=["attacks against Maersk"], reference="Maersk.")
    base.update(kw)
    return Item(**base)


def test_score_and_summarise() -> None:
    passage = "In 2017, NotPetya ransomware attacks against Maersk, the shipping company."
    good = score_item(_item(id="a"), answer="NotPetya attacks hit Maersk in 2017 [1].",
                      refused=False, citations={1: passage}, retrieved=["x", passage])
    assert good.correct and good.rank == 2 and good.citation_recall == 1.0
    refused = score_item(_item(id="b"), answer="I couldn't find this in the documents.",
                         refused=True, citations={}, retrieved=[passage])
    assert not refused.correct and refused.why.startswith("refused")
    empty = score_item(_item(id="c", category="adversarial", answerable=False, expect="refuse",
                             must_contain=[], evidence=[], reference=""),
                       answer="", refused=False, citations={}, retrieved=[],
                       error="The question is empty.")
    assert empty.correct and empty.refused  # an InputError is a correct rejection
    s = summarise([good, refused, empty])
    assert s["must_contain_accuracy"] == 0.5
    assert s["refusal_recall"] == 1.0 and s["wrongly_refused"] == 0.5
    assert s["hit@1"] == 0.5 and s["hit@3"] == 1.0
    assert s["supported_sentence_share"] == 1.0
    assert s["by_category"]["fact"] == {"items": 2, "correct": 1}


def test_a_citation_is_correct_when_its_quote_overlaps_the_gold_evidence() -> None:
    evidence = ["The attacks cost the company over $300 million in damages."]
    assert metrics.quote_matches_evidence(
        "In 2017, NotPetya hit Maersk. The attacks cost the company over **$300 million** "
        "in damages.", evidence)  # the quote holds the span
    assert metrics.quote_matches_evidence("cost the company over $300 million", evidence)
    assert not metrics.quote_matches_evidence("$300 million", evidence)  # too short a piece
    assert not metrics.quote_matches_evidence("Yahoo! lost 3 billion accounts.", evidence)


def test_citation_correctness_and_grounding_labels_are_summarised() -> None:
    item = Item(id="x", category="fact", question="How much?", must_contain=["300 million"],
                evidence=["The attacks cost the company over $300 million in damages."])
    good = score_item(item, answer="It cost over $300 million [1] [2].", refused=False,
                      citations={1: "a", 2: "b"}, retrieved=[],
                      quotes=["The attacks cost the company over $300 million in damages.",
                              "Unrelated sentence about sanctions."])
    assert good.citation_correctness == 0.5 and good.correct
    good.grounding = "checked"
    refused = score_item(item, answer="", refused=True, citations={}, retrieved=[])
    refused.grounding = "refused"
    sure = score_item(item, answer="It cost over $300 million [1].", refused=False,
                      citations={1: "a"}, retrieved=[])
    sure.grounding, sure.self_check_skipped = "checked", True
    s = summarise([good, refused, sure])
    assert s["citation_correctness"] == 0.5 and s["citation_judged_items"] == 1
    assert s["by_grounding"] == {"checked": {"items": 1, "correct": 1},
                                 "refused": {"items": 1, "correct": 0},
                                 "checked, self-check skipped": {"items": 1, "correct": 1}}


def test_the_comparison_report_shows_both_sets_and_the_gap() -> None:
    from assistant.evaluation.report import comparison_markdown
    from assistant.evaluation.runner import Config, RunResult

    def run(accuracy: float) -> RunResult:
        r = RunResult(config=Config.parse("local"))
        r.summary = {"must_contain_accuracy": accuracy,
                     "by_grounding": {"quoted": {"items": 4, "correct": 3}}}
        return r

    text = comparison_markdown([("questions", [run(0.9)]), ("test_questions", [run(0.7)])],
                               "abc123")
    assert "| Must-contain accuracy (answerable) | ≥ 0.8 | 0.900 | 0.700 | -0.200 |" in text
    assert "| quoted | 3/4 = 0.75 | 3/4 = 0.75 |" in text


def test_with_two_development_sets_the_test_set_is_also_compared_with_both_pooled() -> None:
    from assistant.evaluation.report import comparison_markdown
    from assistant.evaluation.runner import Config, RunResult

    item = Item(id="x", category="fact", question="How much?", must_contain=["300 million"])

    def run(right: int, wrong: int) -> RunResult:
        r = RunResult(config=Config.parse("local"))
        r.results = ([score_item(item, answer="$300 million", refused=False, citations={},
                                 retrieved=[]) for _ in range(right)]
                     + [score_item(item, answer="$3 million", refused=False, citations={},
                                   retrieved=[]) for _ in range(wrong)])
        r.summary = summarise(r.results)
        return r

    text = comparison_markdown([("questions", [run(3, 0)]), ("dev2", [run(0, 1)]),
                                ("test", [run(1, 1)])], "abc123")
    # Pooled: 3 of 4 right. Gaps: dev2 and test from the first set, test from the pool.
    assert ("| Must-contain accuracy (answerable) | ≥ 0.8 | 1.000 | 0.000 | 0.750 | 0.500 "
            "| -1.000 | -0.500 | -0.250 |") in text
    assert "| gap (dev2) | gap (test) | gap (test − pooled) |" in text
    assert "questions + dev2" in text
