from assistant.citations import (
    check_answer,
    conflates,
    markers,
    numbers_bound,
    support_score,
    supports,
)
from assistant.types import Passage


def p(i: int, text: str) -> Passage:
    return Passage(id=f"p{i}", document="d.md", title="T", section=f"S{i}", text=text,
                   start=0, end=len(text))


PASSAGES = [
    p(1, "The attacks cost the company over $300 million in damages."),
    p(2, "YAKSHA covers Brunei Darussalam, Cambodia and Vietnam."),
]


def test_markers_are_parsed_in_order() -> None:
    assert markers("A [2]. B [1, 3].") == [2, 1, 3]


def test_invented_citations_are_removed_and_the_rest_renumbered() -> None:
    checked = check_answer(
        "YAKSHA covers Cambodia and Vietnam [2]. The attacks cost over $300 million [1] [7].",
        PASSAGES,
    )
    assert checked.dropped_markers == [7]
    assert checked.text == ("YAKSHA covers Cambodia and Vietnam [1]. "
                            "The attacks cost over $300 million [2].")
    assert [c.section for c in checked.citations] == ["S2", "S1"]
    assert checked.citations[0].text == PASSAGES[1].text


def test_unsupported_sentences_are_dropped_or_reported() -> None:
    answer = "The attacks cost $500 million [1]. YAKSHA covers Cambodia [2]."
    checked = check_answer(answer, PASSAGES)
    assert checked.unsupported == ["The attacks cost $500 million."]
    assert checked.text == "YAKSHA covers Cambodia [1]."
    kept = check_answer(answer, PASSAGES, drop_unsupported=False)
    assert kept.unsupported and "[1]" in kept.text and "[2]" in kept.text


def test_support_needs_the_numbers_and_most_words() -> None:
    assert supports("It cost over $300 million.", PASSAGES[0].text)
    assert support_score("It cost over $200 million.", PASSAGES[0].text) == 0.0
    assert not supports("Ransomware hit ports in Asia.", PASSAGES[0].text)


def test_a_sentence_without_a_marker_borrows_a_supporting_neighbours_source() -> None:
    checked = check_answer(
        "YAKSHA covers Brunei Darussalam. It also covers Cambodia and Vietnam. [2]", PASSAGES
    )
    assert checked.text == ("YAKSHA covers Brunei Darussalam [1]. "
                            "It also covers Cambodia and Vietnam [1].")
    unrelated = check_answer("Penguins live in Antarctica. YAKSHA covers Cambodia [2].",
                             PASSAGES)
    assert unrelated.uncited == ["Penguins live in Antarctica."]


def test_a_sentence_drawing_on_two_sources_gets_both_citations() -> None:
    both = "The attacks cost over $300 million, and YAKSHA covers Cambodia and Vietnam [1]."
    checked = check_answer(both, PASSAGES)
    assert checked.unsupported == []
    assert checked.text.endswith("Cambodia and Vietnam [1] [2].")
    # A wrong citation is replaced when another given source supports the sentence alone.
    swapped = check_answer("YAKSHA covers Cambodia and Vietnam [1].", PASSAGES)
    assert swapped.text == "YAKSHA covers Cambodia and Vietnam [1]."
    assert [c.section for c in swapped.citations] == ["S2"]
    # Nothing given supports it: still dropped.
    assert check_answer("YAKSHA covers Peru [1].", PASSAGES).unsupported


def test_each_side_of_a_because_is_checked_on_its_own() -> None:
    maersk = ("In 2017, NotPetya ransomware attacks against Maersk, the world's largest cargo "
              "shipping company. The attacks cost the company over $300 million in damages.")
    assert supports("NotPetya ransomware attacks against Maersk cost the company over "
                    "$300 million in damages.", maersk)
    assert not supports("The EU imposed sanctions on Maersk in 2017 because NotPetya "
                        "ransomware attacks against Maersk cost the company over $300 million "
                        "in damages.", maersk)


def test_a_possessive_name_is_found_in_the_passage() -> None:
    nis = ("It creates a culture of security across vital sectors (energy, transport, water) "
           "under the NIS Directive.")
    assert supports("The NIS Directive's culture of security covers energy, transport and "
                    "water.", nis)


def test_two_sources_complete_a_sentence_only_clause_by_clause() -> None:
    given = [p(1, "NotPetya ransomware attacks hit Maersk in 2017."),
             p(2, "The EU can impose sanctions on persons responsible for cyberattacks.")]
    both = check_answer("NotPetya hit Maersk in 2017, and the EU can impose sanctions [1].",
                        given)
    assert both.text.endswith("[1] [2].")
    merged = check_answer("The EU imposed sanctions on Maersk for NotPetya in 2017 [1].", given)
    assert merged.unsupported and merged.text == ""
    # With no marker at all, each clause is attributed to the one source that supports it.
    bare = check_answer("NotPetya hit Maersk in 2017, and the EU can impose sanctions.", given)
    assert bare.uncited == [] and bare.text.endswith("[1] [2].")
    unmarked = check_answer("The EU imposed sanctions on Maersk for NotPetya in 2017.", given)
    assert unmarked.uncited and "[" not in unmarked.text


def test_a_figure_must_stand_beside_what_it_counts() -> None:
    box = "**15** states signed on or invited to accede\n\n**64** parties"
    assert supports("15 states signed on or were invited to accede.", box)
    assert supports("The Budapest Convention has 64 parties.", box + " Budapest Convention")
    assert not supports("64 states signed on or were invited to accede.", box)
    assert numbers_bound("It cost over $300 million.", PASSAGES[0].text)


def test_an_acronym_opening_a_sentence_is_a_name_too() -> None:
    ejcn = "The Network, supported by Eurojust, facilitates cooperation."
    assert supports("Eurojust supports the Network.", ejcn)
    assert not supports("ENISA supports the Network.", ejcn)


def test_names_the_question_asks_about_must_be_in_the_sources() -> None:
    from assistant.citations import citation_for, unmentioned_names

    cited = [citation_for(1, PASSAGES[1])]
    assert unmentioned_names("Which countries does YAKSHA cover?", cited) == []
    assert unmentioned_names("Which countries did Maersk and YAKSHA cover?", cited) == ["maersk"]
    assert unmentioned_names("which countries does it cover?", cited) == []


def test_a_not_in_another_sentence_of_the_passage_is_no_negation() -> None:
    passage = ("Diplomacy is not only words. The EU takes concrete actions and implements "
               "projects to support partner countries.")
    assert supports("The EU implements projects to support partner countries.", passage)
    assert not supports("Diplomacy is only words.", passage)


def test_a_paragraph_number_opens_its_sentence() -> None:
    from assistant.text import sentence_spans

    text = "b) If it is not part.\n\n3. Each Party shall ensure it. Art. 222 TFEU applies."
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "b) If it is not part.", "3. Each Party shall ensure it.", "Art. 222 TFEU applies."]


def test_a_passage_speaks_under_its_documents_title() -> None:
    art = Passage(id="a2", document="ets185.md", title="Convention on Cybercrime (Budapest "
                  "Convention)", section="Article 2 – Illegal access", text="Each Party shall "
                  "establish as criminal offences the access to a computer system without right.",
                  start=0, end=0)
    checked = check_answer("The Budapest Convention makes access to a computer system "
                           "without right a criminal offence [1].", [art])
    assert not checked.unsupported and checked.citations
    assert not supports("The Budapest Convention makes access to a computer system without "
                        "right a criminal offence.", art.text)


def test_a_claim_joining_two_sources_into_one_neither_makes_is_a_conflation() -> None:
    given = [p(1, "The EU can impose sanctions on persons responsible for cyberattacks."),
             p(2, "In 2017, NotPetya ransomware attacks hit Maersk.")]
    assert conflates("The EU imposed sanctions on Maersk in 2017.", given)
    # Each clause from one source, or words no source has (a paraphrase), are no conflation.
    assert not conflates("NotPetya hit Maersk in 2017, and the EU can impose sanctions.", given)
    assert not conflates("The shipping giant took a heavy financial hit in 2017.", given)
