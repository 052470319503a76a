from assistant.retrieval import BM25, rrf
from assistant.text import sentence_spans, stem, tokens


def test_rrf_rewards_agreement_between_rankings() -> None:
    fused = rrf([["a", "b", "c"], ["c", "a", "d"]])
    ids = [i for i, _ in fused]
    assert ids[0] == "a"  # ranked 1st and 2nd
    assert ids.index("c") < ids.index("b")  # 3rd + 1st beats 2nd alone
    assert set(ids) == {"a", "b", "c", "d"}
    assert fused[0][1] == 1 / 61 + 1 / 62


def test_bm25_prefers_rare_matching_terms() -> None:
    docs = [tokens("port security and ransomware"), tokens("security of elections"),
            tokens("security culture")]
    scores = BM25(docs).scores(tokens("ransomware security"))
    assert max(scores, key=lambda i: scores[i]) == 0
    assert BM25(docs).term_weight("ransomware") > BM25(docs).term_weight("security")


def test_tokens_stem_plurals_and_drop_stopwords() -> None:
    assert tokens("Which countries are the parties?") == ["country", "party"]
    assert stem("measures") == stem("measure") == "measur"


def test_sentence_spans_keep_abbreviations_together() -> None:
    text = "See Art. 222 TFEU. Then more.\n- item one\n- item two"
    parts = [text[a:b] for a, b in sentence_spans(text)]
    assert parts == ["See Art. 222 TFEU.", "Then more.", "- item one", "- item two"]


def test_keep_leaders_keeps_each_rankings_best_hits() -> None:
    from assistant.retrieval import keep_leaders

    dense = ["d1", "d2", "x", "y", "z"]
    keyword = ["x", "y", "z", "w", "d1"]
    fused = rrf([dense, keyword])
    top = [i for i, _ in keep_leaders(fused, [dense, keyword], 3, leaders=2)]
    assert len(top) == 3 and {"d1", "x"} <= set(top)
    assert [i for i, _ in keep_leaders(fused, [dense, keyword], 5, leaders=1)] == \
        [i for i, _ in fused[:5]]


def test_a_definition_question_finds_the_passage_that_defines_the_term() -> None:
    from assistant.text import defines, definition_subject

    assert definition_subject("What is cyber diplomacy?") == "cyber diplomacy"
    assert definition_subject("What is the NIS Directive?") == "NIS Directive"
    assert definition_subject("How much did NotPetya cost?") == ""
    assert defines("Intro.\n\n**Cyber diplomacy** – a set of practices.", "cyber diplomacy")
    assert defines("The NIS Directive is the first EU-wide law.", "NIS Directive")
    assert not defines("The EU pursues cyber diplomacy with partners.", "cyber diplomacy")


def test_the_stemmer_joins_a_verb_and_its_endings() -> None:
    assert {stem(w) for w in ("impose", "imposes", "imposed", "imposing")} == {"impos"}
    assert stem("free") == "free" and stem("services") == stem("service")
