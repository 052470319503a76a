"""Collections: names, their Chroma names, isolation of questions, the bound on open
collections, the CLI's --collection, and an index built before collections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from assistant.catalog import (
    DEFAULT,
    CollectionError,
    index_name,
    names_in,
    stats,
    valid_name,
)

from .conftest import (
    CHARTER_QUESTION,
    FERRY_QUESTION,
    MULTIDOC,
    CollectionsData,
)

REFUSAL = "I couldn't find this in the documents."


# -- names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["default", "news", "a", "x-1_y", "9" * 63])
def test_valid_names(name: str) -> None:
    assert valid_name(name) == name


@pytest.mark.parametrize("name", ["", "News", "-x", "_x", "a.b", "a/b", "../x", "a b", "é",
                                  "9" * 64, None, 3])
def test_invalid_names_are_422(name: Any) -> None:
    with pytest.raises(CollectionError) as caught:
        valid_name(name)
    assert caught.value.status == 422


def test_chroma_names_never_overlap() -> None:
    """`default` keeps the prefix itself; no collection's names start with another's."""
    assert index_name("assistant", DEFAULT) == "assistant"
    assert index_name("assistant", "news") == "assistant.news."
    names = ["news", "news-g1", "news-lease", "g1", "pointer", "x"]
    prefixes = ["assistant"] + [index_name("assistant", n) for n in names]
    for a in prefixes:
        for b in prefixes:
            if a != b:  # what ChromaIndex matches by prefix: "<name>-g", "<name>-lease-", "<name>-"
                assert not (b + "-g1-abc").startswith(a + "-"), (a, b)
    chroma = [f"{p}-pointer" for p in prefixes] + ["assistant-g3-abc", "other-pointer",
                                                  "assistant.Bad.-pointer"]
    assert names_in("assistant", chroma) == ["default", *sorted(names)]


def test_stats_from_the_manifest() -> None:
    manifest = {"a.md": {"chunks": 2}, "b.md": {"chunks": 5}}
    assert stats({"manifest": json.dumps(manifest)}) == (2, 7)
    assert stats({"manifest": json.dumps({"a.md": {}})}) == (1, None)
    assert stats(None) == (0, 0)


# -- the assistant -------------------------------------------------------------------------
def assistant_over(data: CollectionsData, embedder: Any, **overrides: Any) -> Any:
    from assistant import Assistant, Settings

    settings = Settings(data_dir=data.data_dir, corpus_dir=data.corpus_dir,
                        generator="extractive", **overrides)
    return Assistant(settings, embedder=embedder)


@pytest.mark.slow
def test_questions_see_only_their_collection(collections_data: CollectionsData,
                                             embedder: Any) -> None:
    a = assistant_over(collections_data, embedder)
    assert a.collections() == ["default", "ferries"]
    info = {c["name"]: c for c in a.collection_info()}
    assert info["default"]["documents"] == 2 and info["ferries"]["documents"] == 1
    assert info["ferries"]["chunks"] == a.retriever_for("ferries").count > 0

    ferry = a.ask(FERRY_QUESTION, collection="ferries")
    assert not ferry.refused and "backup tapes" in ferry.answer
    assert {c.document for c in ferry.citations} == {"ferry-guidelines.txt"}
    assert ferry.collection == "ferries" and ferry.to_json()["collection"] == "ferries"
    assert all("&c=ferries&" in c.url for c in ferry.citations)

    # The same question in `default` (no collection named) finds nothing: the ferry text is
    # not among its passages; and the other way round.
    assert a.ask(FERRY_QUESTION).refused
    charter = a.ask(CHARTER_QUESTION)
    assert not charter.refused and "Aldby" in charter.answer
    assert charter.collection == "default"
    assert all("c=" not in c.url for c in charter.citations)  # default links stay as they were
    assert a.ask(CHARTER_QUESTION, collection="ferries").refused
    for collection in (None, "ferries"):
        passages = a.retriever_for(collection).retrieve("ferry harbour charter river", 20)
        documents = {p.document for p in passages}
        expected = {"ferry-guidelines.txt"} if collection else {"harbour-charter.md",
                                                                 "river-compact.md"}
        assert documents == expected

    assert a.document("ferry-guidelines.txt", "ferries") is not None
    assert a.document("ferry-guidelines.txt") is None


@pytest.mark.slow
def test_unknown_and_invalid_collections_are_errors(collections_data: CollectionsData,
                                                    embedder: Any) -> None:
    a = assistant_over(collections_data, embedder)
    for name, status in (("nope", 404), ("Bad Name", 422), ("../default", 422)):
        with pytest.raises(CollectionError) as caught:
            a.ask(FERRY_QUESTION, collection=name)
        assert caught.value.status == status
    with pytest.raises(CollectionError):
        a.document("ferry-guidelines.txt", "nope")
    assert "nope" not in a.collections(refresh=True)  # asking never creates one


@pytest.mark.slow
def test_open_collections_are_bounded(tmp_path: Path, collections_data: CollectionsData,
                                      embedder: Any) -> None:
    """One retriever per collection, the least recently used let go past the bound; the
    embedding model is shared, and answers stay right."""
    data = tmp_path / "data"
    shutil.copytree(collections_data.data_dir, data)
    from assistant import Assistant, Settings

    settings = Settings(data_dir=data, corpus_dir=collections_data.corpus_dir,
                        generator="extractive", max_open_collections=1)
    a = Assistant(settings, embedder=embedder)
    assert a.ingest([MULTIDOC / "river-compact.md"], collection="rivers").ok
    for _ in range(2):
        for name, question, document in (
                ("ferries", FERRY_QUESTION, "ferry-guidelines.txt"),
                ("rivers", "How many members does the river council have?",
                 "river-compact.md")):
            answer = a.ask(question, collection=name)
            assert {c.document for c in answer.citations} == {document}, answer
            assert len(a._spaces) == 1 and name in a._spaces
            assert a._spaces[name].index.client is a.index.client
            assert a.retriever_for(name).embedder is a.embedder


@pytest.mark.slow
def test_an_index_from_before_collections_is_default(tmp_path: Path, embedder: Any) -> None:
    """The `collection` setting stays the default collection's Chroma prefix: an index built
    by an older version (the same names) is the `default` collection, and ingesting another
    collection and re-ingesting default leave each other alone."""
    from assistant import Assistant, Settings
    from assistant.store import ChromaIndex

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(MULTIDOC / "harbour-charter.md", corpus)
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=corpus, generator="extractive",
                        collection="legacy")
    old = ChromaIndex(settings.data_dir, "", "legacy")  # what the older version opened
    from assistant.ingest import ingest

    assert ingest(old, embedder, [corpus]).ok
    a = Assistant(settings, embedder=embedder)
    assert a.index.state()["active"] == old.state()["active"]
    assert "Aldby" in a.ask(CHARTER_QUESTION).answer
    assert a.ingest([MULTIDOC / "ferry-guidelines.txt"], collection="ferries").ok
    shutil.copy(MULTIDOC / "river-compact.md", corpus)
    assert a.ingest().ok  # a new default generation, and its clean-up
    names = a.index.store_names()
    assert "legacy-pointer" in names and "legacy.ferries.-pointer" in names
    assert "backup tapes" in a.ask(FERRY_QUESTION, collection="ferries").answer
    assert [c["name"] for c in a.collection_info()] == ["default", "ferries"]
    assert {c["name"]: c["documents"] for c in a.collection_info()} == {"default": 2,
                                                                         "ferries": 1}


# -- the command line ----------------------------------------------------------------------
@pytest.fixture
def cli_assistant(monkeypatch: pytest.MonkeyPatch, embedder: Any) -> None:
    """The CLI's assistant, with the session's embedding model (not loaded again)."""
    from assistant import Assistant, cli

    monkeypatch.setattr(cli, "_assistant", lambda settings: Assistant(settings,
                                                                      embedder=embedder))


@pytest.mark.slow
@pytest.mark.usefixtures("cli_assistant")
def test_cli_ingest_and_ask_name_a_collection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from assistant import cli

    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ASSISTANT_CORPUS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("ASSISTANT_GENERATOR", "extractive")
    (tmp_path / "empty").mkdir()
    ferry = str(MULTIDOC / "ferry-guidelines.txt")
    assert cli.main(["ingest", "--collection", "ferries", ferry]) == 0
    assert "in the collection 'ferries'" in capsys.readouterr().out
    assert cli.main(["ask", "--json", "--collection", "ferries", FERRY_QUESTION]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "backup tapes" in out["answer"] and out["collection"] == "ferries"
    assert cli.main(["ask", "--json", FERRY_QUESTION]) == 0
    assert json.loads(capsys.readouterr().out)["refused"] is True

    assert cli.main(["ask", "--json", "--collection", "nope", FERRY_QUESTION]) == 2
    assert "Unknown collection 'nope'" in json.loads(capsys.readouterr().out)["error"]
    assert cli.main(["ingest", "--collection", "Bad!", ferry]) == 2
    assert "Invalid collection name" in capsys.readouterr().err
    assert cli.main(["ingest", "--collection", "other"]) == 2  # no paths: not the corpus
    assert "name the files or folders" in capsys.readouterr().err


@pytest.mark.slow
def test_collections_on_a_chroma_server(tmp_path: Path, chroma_server: str,
                                        embedder: Any) -> None:
    """The derived Chroma names are accepted by a real `chroma run` server, each collection
    has its own ingest lease there, and questions stay in their collection."""
    from assistant import Assistant, Settings

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(MULTIDOC / "harbour-charter.md", corpus)
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=corpus, chroma_url=chroma_server,
                        collection=f"srv{tmp_path.name[-8:].replace('_', '')}",
                        generator="extractive")
    a = Assistant(settings, embedder=embedder)
    assert a.ingest().ok
    long_name = "ferries-" + "x" * 55  # the longest name there is
    for name in ("ferries", long_name):
        assert a.ingest([MULTIDOC / "ferry-guidelines.txt"], collection=name).ok
        answer = a.ask(FERRY_QUESTION, collection=name)
        assert {c.document for c in answer.citations} == {"ferry-guidelines.txt"}
    assert a.ask(FERRY_QUESTION).refused
    assert a.collections(refresh=True) == ["default", "ferries", long_name]
    assert "Aldby" in a.ask(CHARTER_QUESTION).answer
