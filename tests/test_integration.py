"""End to end with the real embedding model and a real embedded Chroma store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

from assistant import Assistant, InputError, Settings
from assistant.answerers import REFUSAL
from assistant.cli import main
from assistant.embeddings import Embedder

from .conftest import BROCHURE, CORPUS

pytestmark = pytest.mark.slow


def test_notpetya_answer_cites_the_300_million_figure(brochure_assistant: Assistant) -> None:
    a = brochure_assistant.ask("How much did the NotPetya attack cost Maersk?")
    assert not a.refused
    assert "300 million" in a.answer
    assert any("300 million" in c.text for c in a.citations)
    source = BROCHURE.read_text(encoding="utf-8")
    for c in a.citations:  # quotes are verbatim slices of the corpus
        assert c.text in source
        assert c.section.endswith("Port security")


def test_recipe_question_is_refused_with_suggestions(brochure_assistant: Assistant) -> None:
    a = brochure_assistant.ask("What is a good recipe for chocolate cake?")
    assert a.refused and a.answer == REFUSAL and not a.citations
    assert a.suggestions


def test_a_question_in_another_language_is_answered_without_a_model(
        brochure_assistant: Assistant) -> None:
    # No model translates it: the names it shares with the brochure find the answer.
    a = brochure_assistant.ask("Quali paesi copre il progetto CyberSouth?")
    assert not a.refused
    assert "Morocco" in a.answer and "Tunisia" in a.answer
    assert any("CyberSouth" in c.section for c in a.citations)
    # Sharing no name with the brochure, an off-topic one is still refused.
    assert brochure_assistant.ask("Qual è la ricetta della torta al cioccolato?").refused
    assert brochure_assistant.ask("Wie heißt der Bürgermeister von Paris?").refused


def test_follow_up_uses_the_previous_turn(brochure_assistant: Assistant) -> None:
    from assistant.types import Message

    first = "Tell me about the CyberSouth project."
    a = brochure_assistant.ask("Which countries does it cover?",
                               [Message("user", first), Message("assistant", "...")])
    assert not a.refused and "Tunisia" in a.answer
    assert a.rewritten_question == "Which countries does the CyberSouth project cover?"


@pytest.mark.parametrize("bad", ["", "   ", "x" * 2001])
def test_empty_and_huge_questions_get_clear_errors(brochure_assistant: Assistant,
                                                   bad: str) -> None:
    with pytest.raises(InputError, match=r"empty|too long"):
        brochure_assistant.ask(bad)


def test_cli_ask_json_shape(brochure_data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(brochure_data_dir))
    monkeypatch.setenv("ASSISTANT_GENERATOR", "extractive")
    assert main(["ask", "--json", "How much did the NotPetya attack cost Maersk?"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"answer", "refused", "citations", "mode", "timings_ms"} <= set(out)
    assert out["refused"] is False and out["mode"] == "extractive"
    cite = out["citations"][0]
    assert set(cite) == {"id", "document", "title", "section", "text", "start", "end", "page",
                         "url"}
    assert "300 million" in cite["text"] and cite["page"] is None
    text = (CORPUS / cite["document"]).read_text(encoding="utf-8")
    assert text[cite["start"]:cite["end"]] == cite["text"]
    assert cite["url"].startswith(f"docs/{cite['document']}?start={cite['start']}&")
    assert main(["ask", "--json", " "]) == 2
    assert "empty" in json.loads(capsys.readouterr().out)["error"]


def _assistant(data: Path, corpus: Path, embedder: Embedder) -> Assistant:
    # Ingestion tests: answers come from the extractive generator (no model needed).
    settings = Settings(data_dir=data, corpus_dir=corpus, generator="extractive")
    return Assistant(settings, embedder=embedder)


def test_incremental_reingest_and_per_file_failures(tmp_path: Path, embedder: Embedder) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(BROCHURE, corpus / BROCHURE.name)
    (corpus / "extra.md").write_text("# Extra\n\n## Ports\n\nThe harbour of Zork has 12 cranes.\n")
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    a = _assistant(tmp_path / "data", corpus, embedder)

    first = a.ingest()
    assert not first.ok and "broken.pdf" in next(iter(first.failures))
    assert first.documents == 2 and first.embedded_chunks == first.chunks

    sentences = a.index.sentence_collection()
    assert sentences is not None and first.embedded_sentences == sentences.count() > first.chunks

    again = a.ingest()
    assert again.embedded_chunks == 0 and again.chunks == first.chunks
    assert again.seconds < 2.0

    (corpus / "extra.md").write_text("# Extra\n\n## Ports\n\nThe harbour of Zork has 14 cranes.\n")
    changed = a.ingest()
    assert changed.updated == ["extra.md"] and changed.embedded_chunks == 1
    # The brochure's sentence vectors were carried over, not embedded again.
    assert changed.embedded_sentences == 1
    sentences = a.index.sentence_collection()
    assert sentences is not None and sentences.count() == first.embedded_sentences
    assert "14 cranes" in a.ask("How many cranes does the harbour of Zork have?").answer

    # An edit to one paragraph of a long document embeds that paragraph's chunk again, not
    # the document: the other chunks keep their vectors, at their new offsets.
    brochure = corpus / BROCHURE.name
    brochure.write_text(brochure.read_text().replace("over $300 million",
                                                     "well over $300 million"))
    edited = a.ingest()
    assert edited.updated == [BROCHURE.name] and edited.embedded_chunks == 1
    assert 0 < edited.embedded_sentences < 10 and edited.reused > edited.chunks
    assert "well over $300 million" in a.ask("How much did the NotPetya attack cost Maersk?").answer
    later = a.ask("When was the EU cyber sanctions regime established?")
    view = a.document(BROCHURE.name)
    assert later.citations and view is not None
    for c in later.citations:  # past the edit: the offsets moved with it
        assert view.passage(c.start, c.end) == c.text
        assert brochure.read_text()[c.start:c.end] == c.text

    (corpus / "extra.md").unlink()
    removed = a.ingest()
    assert removed.removed == ["extra.md"] and removed.documents == 1
    assert a.ask("How many cranes does the harbour of Zork have?").refused


def test_crash_mid_ingest_keeps_the_previous_index(tmp_path: Path, embedder: Embedder,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(BROCHURE, corpus / BROCHURE.name)
    a = _assistant(tmp_path / "data", corpus, embedder)
    a.ingest()
    before = a.ask("How much did the NotPetya attack cost Maersk?").answer

    (corpus / "new.md").write_text("# New\n\nA new document about quantum keys.\n")

    def crash(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("power cut")

    monkeypatch.setattr(a.index._pointer, "modify", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        a.ingest()
    monkeypatch.undo()

    # A fresh process sees the previous generation, complete and answering.
    fresh = _assistant(tmp_path / "data", corpus, embedder)
    assert fresh.health()["documents"] == 1
    assert fresh.ask("How much did the NotPetya attack cost Maersk?").answer == before
    # The next ingest cleans up the half-built generation and succeeds.
    assert fresh.ingest().added == ["new.md"]
    names = [c.name for c in fresh.index.client.list_collections()]
    generations = [n for n in names if "-g" in n]
    assert len(generations) == 2 and sum(n.endswith("-sentences") for n in generations) == 1


def test_multi_document_corpus(tmp_path: Path, embedder: Embedder,
                               multidoc_corpus: Path) -> None:
    a = _assistant(tmp_path / "data", CORPUS, embedder)
    report = a.ingest([CORPUS, multidoc_corpus])
    assert report.ok and report.documents == 4
    ans = a.ask("Which port authorities signed the Lindqvist Harbour Charter?")
    assert not ans.refused and "Corvik" in ans.answer
    assert {c.document for c in ans.citations} == {"harbour-charter.md"}
    ans = a.ask("What fine does a member pay for not reporting a lock gate outage?")
    assert "20,000" in ans.answer
    assert any(c.document == "river-compact.md" for c in ans.citations)
    ans = a.ask("How much did the NotPetya attack cost Maersk?")
    assert {c.document for c in ans.citations} == {BROCHURE.name}


SPYWARE = "Why does the EU care about spying software being sold abroad?"
MISUSE = "Preventing the misuse of new technologies"


def test_sentence_search_finds_a_chunk_by_one_of_its_sentences(
        brochure_assistant: Assistant) -> None:
    # The answer ("export controls aim to prevent human rights violations associated with
    # certain cyber surveillance technologies") is one sentence of a long chunk about other
    # things, and shares no content word with the question.
    r = brochure_assistant.retriever
    found = [p.section for p in r.retrieve(SPYWARE, 5)]
    assert any(s.endswith(MISUSE) for s in found)
    r.sentence_search = False
    try:
        assert not any(p.section.endswith(MISUSE) for p in r.retrieve(SPYWARE, 5))
    finally:
        r.sentence_search = True


def test_extractive_scorer_reuses_the_stored_sentence_vectors(
        brochure_data_dir: Path, embedder: Embedder) -> None:
    embedded: list[str] = []

    class Counting:
        name, dimension = embedder.name, embedder.dimension

        def embed(self, texts: list[str]) -> np.ndarray:
            embedded.extend(texts)
            return embedder.embed(texts)

    a = Assistant(Settings(data_dir=brochure_data_dir, corpus_dir=CORPUS,
                           generator="extractive"), embedder=Counting())
    assert "300 million" in a.ask("How much did the NotPetya attack cost Maersk?").answer
    assert embedded == ["How much did the NotPetya attack cost Maersk?"]  # the question only


def test_index_from_before_sentence_search_is_rebuilt(tmp_path: Path, embedder: Embedder) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("# A\n\nThe harbour of Zork has 12 cranes. It opened in 1990.\n")
    a = _assistant(tmp_path / "data", corpus, embedder)
    a.ingest()
    sentences = a.index.sentence_collection()
    assert sentences is not None
    a.index.client.delete_collection(sentences.name)  # what an older version left behind
    assert not a.index.has_sentences()
    assert a.ask("How many cranes does the harbour of Zork have?").answer  # still answers
    rebuilt = a.ingest()
    assert rebuilt.embedded_chunks == rebuilt.chunks and rebuilt.embedded_sentences == 2
    assert a.index.has_sentences()
