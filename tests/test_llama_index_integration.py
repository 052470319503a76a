"""The assistant used from llama-index code: its retriever inside a llama-index query engine,
its grounded answerer as a query engine and a chat engine (extractive generator, real
embedding model, embedded Chroma)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from .conftest import BROCHURE
from .pdf import text_pdf

if TYPE_CHECKING:
    from assistant import Assistant
    from assistant.embeddings import Embedder

pytestmark = pytest.mark.slow

NOTPETYA = "How much did the NotPetya attack cost Maersk?"
T = TypeVar("T")


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine in a thread of its own (an earlier test in the session may have left
    an event loop running in this one)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(timeout=300)


def test_the_product_never_imports_llama_index() -> None:
    code = ("import sys, assistant, assistant.core, assistant.cli, assistant.server.app; "
            "print(sorted(m for m in sys.modules if m.startswith('llama_index')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_retriever_inside_a_llama_index_query_engine(brochure_assistant: Assistant) -> None:
    from llama_index.core.llms import MockLLM
    from llama_index.core.postprocessor import SimilarityPostprocessor
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.schema import MetadataMode, TextNode

    from assistant.integrations.llama_index import AssistantRetriever

    retriever = AssistantRetriever(brochure_assistant, top_k=3)
    nodes = retriever.retrieve(NOTPETYA)
    assert len(nodes) == 3 and nodes[0].score is not None
    source = BROCHURE.read_text(encoding="utf-8")
    top = nodes[0].node
    assert isinstance(top, TextNode)
    meta = top.metadata
    assert meta["document"] == BROCHURE.name and top.ref_doc_id == BROCHURE.name
    assert meta["section"].endswith("Port security") and "300 million" in top.get_content()
    assert source[meta["start"]:meta["end"]] == top.get_content()
    assert (top.start_char_idx, top.end_char_idx) == (meta["start"], meta["end"])
    assert meta["page"] is None and len(meta["version"]) == 64
    assert meta["url"].startswith(f"docs/{BROCHURE.name}?start={meta['start']}&")
    # What a language model would read: title and heading path, no offsets or links.
    llm_text = top.get_content(metadata_mode=MetadataMode.LLM)
    assert "Port security" in llm_text and "url" not in llm_text

    # A stock llama-index query engine over it: MockLLM echoes the prompt it is given, so the
    # "answer" shows the passages reached the synthesizer.
    engine = RetrieverQueryEngine.from_args(
        retriever, llm=MockLLM(),
        node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=0.0)])
    response = engine.query(NOTPETYA)
    assert [n.node.node_id for n in response.source_nodes] == [n.node.node_id for n in nodes]
    assert "300 million" in str(response)
    assert run_async(lambda: retriever.aretrieve(NOTPETYA))[0].node.node_id == top.node_id


def test_query_engine_answers_with_citation_nodes(brochure_assistant: Assistant) -> None:
    from llama_index.core.base.response.schema import Response, StreamingResponse

    from assistant.integrations.llama_index import AssistantQueryEngine

    engine = AssistantQueryEngine(brochure_assistant)
    response = engine.query(NOTPETYA)
    assert isinstance(response, Response)
    assert "300 million" in str(response)
    assert response.metadata is not None
    assert response.metadata["grounding"] == "quoted" and response.metadata["refused"] is False
    source = BROCHURE.read_text(encoding="utf-8")
    assert response.source_nodes
    for i, node in enumerate(response.source_nodes, start=1):
        meta = node.node.metadata
        assert meta["citation"] == i and meta["document"] == BROCHURE.name
        assert source[meta["start"]:meta["end"]] == node.node.get_content()
    assert response.metadata["citations"][0]["text"] == response.source_nodes[0].node.get_content()

    refused = engine.query("What is a good recipe for chocolate cake?")
    assert refused.metadata is not None and refused.metadata["grounding"] == "refused"
    assert refused.source_nodes == [] and refused.metadata["suggestions"]

    streaming = AssistantQueryEngine(brochure_assistant, streaming=True).query(NOTPETYA)
    assert isinstance(streaming, StreamingResponse) and not streaming.source_nodes
    text = "".join(streaming.response_gen)
    assert "300 million" in text and streaming.source_nodes
    assert streaming.metadata is not None and streaming.metadata["answer"] == text


def test_chat_engine_follows_up_and_streams(brochure_assistant: Assistant) -> None:
    from llama_index.core.base.llms.types import ChatMessage, MessageRole

    from assistant.integrations.llama_index import AssistantChatEngine

    chat = AssistantChatEngine(brochure_assistant)
    first = chat.chat("Tell me about the CyberSouth project.")
    assert first.source_nodes and first.metadata is not None
    follow = chat.chat("Which countries does it cover?")
    assert "Tunisia" in follow.response and follow.source_nodes
    assert follow.metadata is not None and follow.metadata["grounding"] == "quoted"
    assert follow.metadata["rewritten_question"] == \
        "Which countries does the CyberSouth project cover?"
    assert [m.role for m in chat.chat_history] == [MessageRole.USER, MessageRole.ASSISTANT] * 2

    # The same follow-up, streamed, with the history passed in.
    history = chat.chat_history[:2]
    chat.reset()
    streamed = chat.stream_chat("Which countries does it cover?", chat_history=history)
    text = "".join(streamed.response_gen)
    assert "Tunisia" in text and str(streamed) == follow.response
    assert [n.node.get_content() for n in streamed.source_nodes] == \
        [n.node.get_content() for n in follow.source_nodes]
    assert streamed.metadata["grounding"] == "quoted" and len(chat.chat_history) == 4

    async def asynchronous() -> tuple[str, str]:
        chat.reset()
        a = await chat.achat("Tell me about the CyberSouth project.")
        s = await chat.astream_chat("Which countries does it cover?")
        parts = [delta async for delta in s.async_response_gen()]
        return a.response, "".join(parts)

    first_text, second_text = run_async(asynchronous)
    assert first_text == first.response and "Tunisia" in second_text
    assert ChatMessage(role=MessageRole.USER, content="Which countries does it cover?") \
        in chat.chat_history


def test_retriever_nodes_name_the_pdf_page(tmp_path: Path, embedder: Embedder) -> None:
    from assistant import Assistant, Settings
    from assistant.integrations.llama_index import AssistantRetriever

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # Page 2 is too long to share a chunk with page 1, so its text starts a chunk.
    filler = [f"Line {i} of the tide tables lists the hours of high and low water at the "
              "northern estuary piers." for i in range(8)]
    (corpus / "tides.pdf").write_bytes(text_pdf([
        ["Tide tables for the northern estuary.",
         "Each table gives the hours of high and low water for one month of the year.",
         "Heights are measured from the chart datum at the harbour wall."],
        ["The spring tide at Kelmouth rises 6 metres.", *filler,
         "Neap tides at Kelmouth rise about half as high."],
    ]))
    a = Assistant(Settings(data_dir=tmp_path / "data", corpus_dir=corpus,
                           generator="extractive"), embedder=embedder)
    assert a.ingest().ok
    nodes = AssistantRetriever(a, top_k=2).retrieve("How high does the spring tide rise?")
    by_text = {n.node.get_content(): n.node.metadata for n in nodes}
    page2 = next(m for t, m in by_text.items() if "6 metres" in t)
    assert page2["page"] == 2 and page2["document"] == "tides.pdf"
