from assistant.citations import (
    figures,
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


def test_support_needs_the_numbers_and_most_words() -> None:
    assert supports("It cost over $300 million.", PASSAGES[0].text)
    assert support_score("It cost over $200 million.", PASSAGES[0].text) == 0.0
    assert not supports("Ransomware hit ports in Asia.", PASSAGES[0].text)


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


def test_a_segment_without_a_word_is_no_sentence() -> None:
    from assistant.text import sentence_spans

    text = "Activities in division 26 of NACE Rev. 2\n2019 was a dry year. See p. 15."
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "Activities in division 26 of NACE Rev. 2", "2019 was a dry year.", "See p. 15."]


def test_figures_are_read_in_digits_and_in_words() -> None:
    assert figures("not less than sixty days, and 64 parties") == {"60", "64"}
    assert figures("Twenty-four hours or ninety days") == {"24", "90"}
    assert figures("two million euros") == {"2", "2000000"}
    assert figures("someone often went to the tenth floor") == set()
