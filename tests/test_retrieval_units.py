import threading

import numpy as np
import pytest

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


def test_a_query_during_a_refresh_reads_one_whole_snapshot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant import retrieval
    from assistant.chunking import Chunk

    def chunk(i: int, text: str) -> Chunk:
        return Chunk(id=f"c{i}", document="d.md", title="D", section="S", text=text,
                     start=0, end=len(text))

    old = [chunk(i, f"The harbour of Zork has {i} cranes and {i} piers.") for i in range(5)]
    new = [chunk(9, "The river of Quell has nine bridges.")]

    class Index:  # two generations; the served one switches when `active` changes
        active = "g1"

        def state(self) -> dict[str, str]:
            return {"active": self.active}

        def all_chunks(self) -> list[Chunk]:
            return old if self.active == "g1" else new

        def active_collection(self, refresh: bool = True) -> None:
            return None

        def query(self, vec: np.ndarray, k: int) -> list[tuple[str, float]]:
            return []

        def embeddings(self, ids: list[str]) -> dict[str, np.ndarray]:
            return {}

    class Embedder:
        name, dimension = "none", 3

        def embed(self, texts: list[str]) -> np.ndarray:
            return np.zeros((len(texts), 3), dtype=np.float32)

    building, finish = threading.Event(), threading.Event()

    def slow_load(index: Index, active: str) -> retrieval.KeywordIndex:
        # The new generation's keyword index takes a while to load.
        if active == "g2":
            building.set()
            finish.wait(60)
        return retrieval.KeywordIndex.from_chunks(index.all_chunks())

    monkeypatch.setattr(retrieval, "load_keyword_index", slow_load)
    index = Index()
    r = retrieval.HybridRetriever(index, Embedder(), sentence_search=False,  # type: ignore[arg-type]
                                  refresh_s=3600)
    index.active = "g2"
    refresher = threading.Thread(target=r.refresh, kwargs={"force": True})
    refresher.start()
    try:
        assert building.wait(60)
        # Mid-refresh: the query sees the old generation whole (chunks and BM25 agree).
        found = r.retrieve("How many cranes does the harbour of Zork have?", 3)
        assert found and {p.id for p in found} <= {c.id for c in old}
        assert {i for i, _ in r.keyword("harbour cranes", 5)} <= {c.id for c in old}
    finally:
        finish.set()
        refresher.join(60)
    assert [p.id for p in r.retrieve("Which river has nine bridges?", 3)] == ["c9"]
