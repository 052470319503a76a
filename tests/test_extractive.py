from assistant.answerers import REFUSAL
from assistant.answerers.extractive import answer
from assistant.types import Passage


def weight(term: str) -> float:
    return 1.0


def p(i: int, section: str, text: str, sim: float = 0.5) -> Passage:
    return Passage(id=f"p{i}", document="d.md", title="T", section=section, text=text, start=0,
                   end=len(text), similarity=sim)


def test_answer_quotes_the_best_sentence_with_its_citation() -> None:
    passages = [
        p(1, "Digital risks › Port security",
          "In 2017, NotPetya hit Maersk. The attacks cost the company over $300 million."),
        p(2, "Data breaches", "Yahoo! announced a breach of 3 billion accounts.", 0.2),
    ]
    a = answer("How much did the attacks cost Maersk?", passages, weight)
    assert not a.refused
    assert "$300 million [1]" in a.answer
    assert [c.id for c in a.citations] == [1] and a.citations[0].text == passages[0].text


def test_a_bare_list_gets_its_heading() -> None:
    passages = [p(1, "Projects › CyberSouth", "Algeria, Jordan, Lebanon, Morocco, Tunisia")]
    a = answer("Which countries does CyberSouth cover?", passages, weight)
    assert a.answer == "CyberSouth: Algeria, Jordan, Lebanon, Morocco, Tunisia [1]."


def test_refuses_when_nothing_covers_the_question() -> None:
    passages = [p(1, "Port security", "NotPetya hit Maersk.", 0.1)]
    a = answer("How do I bake a chocolate cake?", passages, weight)
    assert a.refused and a.answer == REFUSAL and a.citations == []
    assert a.suggestions == ["Port security (d.md)"]


def test_a_date_or_an_article_number_is_no_count() -> None:
    # "How many ...?" wants a count; a sentence whose only figures date or label something
    # does not answer it, however many question words it shares.
    passages = [
        p(1, "Paris Call", "The Paris Call was issued in Paris on 12 November 2018 and endorsed "
          "by states and companies under Article 3 of Regulation (EU) 2019/881.", 0.9),
    ]
    question = "How many states and companies have endorsed the Paris Call?"
    assert answer(question, passages, weight).refused
    counted = [p(1, "Paris Call", "The Paris Call was issued on 12 November 2018 and endorsed "
                 "by 64 states and 300 companies.", 0.9)]
    a = answer(question, counted, weight)
    assert not a.refused and "64 states" in a.answer


def test_a_budget_question_wants_a_figure_and_which_countries_wants_names() -> None:
    budget = [p(1, "ENISA", "The Management Board shall adopt the annual budget of ENISA.",
                0.9)]
    assert answer("What is ENISA's annual budget in euros?", budget, weight).refused
    figure = [p(1, "ENISA", "The annual budget of ENISA is EUR 23 million.", 0.9)]
    assert not answer("What is ENISA's annual budget?", figure, weight).refused
    preamble = [p(1, "Protocol", "The member states signatory to this Protocol have signed "
                  "and agreed as follows.", 0.9)]
    question = "Which countries have signed the Protocol?"
    assert answer(question, preamble, weight).refused
    named = [p(1, "Protocol", "The Protocol was signed by Albania, Armenia and Denmark.", 0.9)]
    assert "Albania" in answer(question, named, weight).answer


def test_a_sentence_introducing_a_list_brings_the_items_after_it() -> None:
    text = ("The point of contact shall provide assistance that includes the following "
            "measures:\n\na) the provision of technical advice;\n\nb) the preservation of "
            "data;\n\nc) the locating of suspects.\n\nThe Parties shall keep records.")
    a = answer("What assistance does the point of contact provide?", [p(1, "Art. 35", text)],
               weight)
    assert a.answer == ("The point of contact shall provide assistance that includes the "
                        "following measures: a) the provision of technical advice; b) the "
                        "preservation of data; c) the locating of suspects [1].")
    assert a.citations[0].text == text  # the passage itself, verbatim


def test_a_question_in_another_language_weighs_only_the_content_words_it_shares() -> None:
    from assistant.answerers.extractive import shared_words
    from assistant.conversation import function_words

    known = {"cybersouth", "progetto"}  # "progetto" stands for a word both languages use
    weight = shared_words(lambda t: 2.0, known.__contains__, function_words("it"))
    assert weight("cybersouth") == 2.0
    assert weight("paesi") == 0.0  # never used by the documents: it can never match
    assert weight("progetto") == 2.0
    # A function word of the question's language counts for nothing, even where the
    # documents happen to hold the same string ("di", "per").
    weight = shared_words(lambda t: 2.0, lambda t: True, function_words("it"))
    assert weight("per") == 0.0 and weight("cybersouth") == 2.0


def test_a_list_is_favoured_only_when_the_question_asks_for_several_things() -> None:
    contacts = p(1, "How to reach the harbour", "You can write to:\n- the harbour office;\n"
                 "- the port authority;\n- the coast guard.", 0.5)
    row = p(2, "Harbour projects › SeaLink", "Zork, Norvale, Brill, Tamsin", 0.5)
    one = answer("Which harbour project works with ports such as Norvale?", [contacts, row],
                 weight)
    assert one.citations[0].text == row.text
    several = answer("Which offices can a visitor write to?", [contacts, row], weight)
    assert "the port authority" in several.answer and "the coast guard" in several.answer
