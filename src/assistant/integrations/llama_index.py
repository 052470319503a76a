"""The assistant inside llama-index code.

- `AssistantRetriever`: the hybrid retriever (dense chunks and sentences plus BM25, fused) as
  a llama-index `BaseRetriever`, for any llama-index query engine, postprocessor or agent.
  Each passage is a `NodeWithScore` whose `TextNode` holds the verbatim chunk text, its
  character offsets (`start_char_idx`/`end_char_idx`, and `start`/`end` in `metadata`), the
  document id (`metadata["document"]`, also the node's source document), title, heading
  path (`section`), PDF page, content hash and document-view URL.
- `AssistantQueryEngine` and `AssistantChatEngine`: the grounded answerer (the same
  pipeline as `assistant ask` and `assistant chat`) as a llama-index query engine and chat
  engine. A response's `source_nodes` are its citations, in order (node `i` is `[i+1]`), each
  quoting its passage verbatim with its offsets; `metadata` holds the answer's JSON fields
  (`grounding`, `refused`, `citations`, `mode`, `notes`, `suggestions`, ...: the
  `assistant ask --json` shape).

Importing this module imports llama-index-core (the `llama-index` extra); nothing else in
the package imports it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

try:
    from llama_index.core.base.base_query_engine import BaseQueryEngine
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
    from llama_index.core.base.response.schema import Response, StreamingResponse
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.chat_engine.types import (
        AgentChatResponse,
        BaseChatEngine,
        StreamingAgentChatResponse,
    )
    from llama_index.core.schema import (
        NodeRelationship,
        NodeWithScore,
        QueryBundle,
        RelatedNodeInfo,
        TextNode,
    )
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "assistant.integrations.llama_index needs llama-index-core: "
        "pip install 'cyber-assistant[llama-index]'") from exc

from ..core import Delta, Final
from ..sources import content_hash, page_at
from ..types import Answer, Citation, Message, Passage, source_url

if TYPE_CHECKING:
    from ..core import Assistant

MANIFEST_REFRESH_S = 2.0
# Metadata a language model reading a node does not need (offsets, hashes, links).
_NOT_FOR_LLM = ["start", "end", "page", "version", "url", "passage_id", "citation",
                "similarity"]


class _Manifest:
    """The index manifest (content hashes, PDF page starts), re-read at most every 2 s."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self._at = 0.0
        self._entries: dict[str, dict[str, Any]] = {}

    def entry(self, document: str) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._at > MANIFEST_REFRESH_S:
            self._entries = self.assistant.index.state()["manifest"]
            self._at = now
        return self._entries.get(document) or {}


def _node(node_id: str, text: str, metadata: dict[str, Any], start: int, end: int,
          document: str) -> TextNode:
    return TextNode(
        id_=node_id, text=text, metadata=metadata, start_char_idx=start, end_char_idx=end,
        excluded_llm_metadata_keys=list(_NOT_FOR_LLM),
        excluded_embed_metadata_keys=list(_NOT_FOR_LLM),
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=document)},
    )


def passage_node(passage: Passage, entry: dict[str, Any] | None = None) -> NodeWithScore:
    """A retrieved passage as a llama-index node; `entry` is its document's manifest entry
    (for the page and content hash)."""
    entry = entry or {}
    version = content_hash(entry)
    metadata = {
        "document": passage.document, "title": passage.title, "section": passage.section,
        "start": passage.start, "end": passage.end,
        "page": page_at(entry.get("pages") or (), passage.start),
        "version": version, "similarity": passage.similarity,
        "url": source_url(passage.document, passage.start, passage.end, version),
    }
    node = _node(passage.id, passage.text, metadata, passage.start, passage.end,
                 passage.document)
    return NodeWithScore(node=node, score=passage.score)


def citation_node(citation: Citation) -> NodeWithScore:
    """A citation (its verbatim quote and where it is) as a llama-index node."""
    metadata = {
        "citation": citation.id, "document": citation.document, "title": citation.title,
        "section": citation.section, "start": citation.start, "end": citation.end,
        "page": citation.page, "version": citation.version, "url": citation.url,
        "passage_id": citation.passage_id,
    }
    node = _node(f"{citation.passage_id or citation.document}:{citation.start}-{citation.end}",
                 citation.text, metadata, citation.start, citation.end, citation.document)
    return NodeWithScore(node=node, score=None)


def answer_metadata(answer: Answer) -> dict[str, Any]:
    """The answer's JSON fields (the `ask --json` shape). After a stream, `answer` is the
    authoritative text: a model's streamed text may be tidied when its citations are checked."""
    return answer.to_json()


def to_response(answer: Answer) -> Response:
    return Response(response=answer.answer,
                    source_nodes=[citation_node(c) for c in answer.citations],
                    metadata=answer_metadata(answer))


class AssistantRetriever(BaseRetriever):
    """The assistant's hybrid retriever as a llama-index retriever."""

    def __init__(self, assistant: Assistant, top_k: int | None = None,
                 callback_manager: CallbackManager | None = None) -> None:
        super().__init__(callback_manager=callback_manager)
        self.assistant = assistant
        self.top_k = top_k or assistant.settings.top_k
        self._manifest = _Manifest(assistant)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        passages = self.assistant.retriever.retrieve(query_bundle.query_str, self.top_k)
        return [passage_node(p, self._manifest.entry(p.document)) for p in passages]


class AssistantQueryEngine(BaseQueryEngine):
    """Grounded answers as a llama-index query engine: `query()` returns a `Response` whose
    `source_nodes` are the citations and whose `metadata["grounding"]` says how the answer
    is grounded. With `streaming=True` it returns a `StreamingResponse`; its `source_nodes`
    and `metadata` are filled in when the stream has been read to its end."""

    def __init__(self, assistant: Assistant, generator: str | None = None,
                 streaming: bool = False,
                 callback_manager: CallbackManager | None = None) -> None:
        super().__init__(callback_manager=callback_manager)
        self.assistant = assistant
        self.generator = generator
        self.streaming = streaming

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {}

    def _query(self, query_bundle: QueryBundle) -> Response | StreamingResponse:
        if not self.streaming:
            return to_response(self.assistant.ask(query_bundle.query_str,
                                                  generator=self.generator))
        events = self.assistant.stream(query_bundle.query_str, generator=self.generator)

        def tokens() -> Generator[str, None, None]:  # runs once `response` exists
            for event in events:
                if isinstance(event, Delta):
                    yield event.text
                elif isinstance(event, Final):
                    response.source_nodes.extend(
                        citation_node(c) for c in event.answer.citations)
                    response.metadata = answer_metadata(event.answer)

        response = StreamingResponse(response_gen=tokens(), source_nodes=[], metadata={})
        return response

    async def _aquery(self, query_bundle: QueryBundle) -> Response | StreamingResponse:
        return await asyncio.to_thread(self._query, query_bundle)


def _history(messages: Sequence[ChatMessage], limit: int) -> list[Message]:
    out = []
    for m in messages:
        if m.role in (MessageRole.USER, MessageRole.ASSISTANT):
            out.append(Message("user" if m.role == MessageRole.USER else "assistant",
                               m.content or ""))
    return out[-limit:] if limit else out


@dataclass
class GroundedStreamingChatResponse(StreamingAgentChatResponse):
    """A streamed chat answer; `source_nodes` and `metadata` (the answer's JSON fields) are
    filled in when the stream has been read to its end."""

    metadata: dict[str, Any] = field(default_factory=dict)


class AssistantChatEngine(BaseChatEngine):
    """Grounded answers as a llama-index chat engine: follow-up questions are rewritten
    against the conversation (kept by the engine, or passed as `chat_history`). Each
    response's `source_nodes` are its citations, `metadata` its JSON fields."""

    def __init__(self, assistant: Assistant, generator: str | None = None,
                 chat_history: Sequence[ChatMessage] | None = None) -> None:
        self.assistant = assistant
        self.generator = generator
        self._history: list[ChatMessage] = list(chat_history or [])

    def reset(self) -> None:
        self._history = []

    @property
    def chat_history(self) -> list[ChatMessage]:
        return list(self._history)

    def _turn(self, message: str, chat_history: Sequence[ChatMessage] | None
              ) -> list[Message]:
        if chat_history is not None:
            self._history = list(chat_history)
        return _history(self._history, self.assistant.settings.max_turns)

    def _remember(self, message: str, answer: str) -> None:
        self._history += [ChatMessage(role=MessageRole.USER, content=message),
                          ChatMessage(role=MessageRole.ASSISTANT, content=answer)]

    def chat(self, message: str, chat_history: list[ChatMessage] | None = None
             ) -> AgentChatResponse:
        answer = self.assistant.ask(message, self._turn(message, chat_history),
                                    generator=self.generator)
        self._remember(message, answer.answer)
        return AgentChatResponse(response=answer.answer,
                                 source_nodes=[citation_node(c) for c in answer.citations],
                                 metadata=answer_metadata(answer))

    def _stream(self, message: str, chat_history: Sequence[ChatMessage] | None
                ) -> tuple[GroundedStreamingChatResponse, Generator[ChatResponse, None, None]]:
        events = self.assistant.stream(message, self._turn(message, chat_history),
                                       generator=self.generator)
        response = GroundedStreamingChatResponse(is_writing_to_memory=False)

        def chat_stream() -> Generator[ChatResponse, None, None]:
            text = ""
            for event in events:
                if isinstance(event, Delta):
                    text += event.text
                    yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT,
                                                           content=text), delta=event.text)
                elif isinstance(event, Final):
                    answer = event.answer
                    response.source_nodes.extend(citation_node(c) for c in answer.citations)
                    response.metadata = answer_metadata(answer)
                    # The final text is authoritative: the response reads it when the
                    # stream ends.
                    response.unformatted_response = answer.answer
                    self._remember(message, answer.answer)

        return response, chat_stream()

    def stream_chat(self, message: str, chat_history: list[ChatMessage] | None = None
                    ) -> GroundedStreamingChatResponse:
        response, stream = self._stream(message, chat_history)
        response.chat_stream = stream
        return response

    async def achat(self, message: str, chat_history: list[ChatMessage] | None = None
                    ) -> AgentChatResponse:
        return await asyncio.to_thread(self.chat, message, chat_history)

    async def astream_chat(self, message: str, chat_history: list[ChatMessage] | None = None
                           ) -> GroundedStreamingChatResponse:
        response, stream = self._stream(message, chat_history)
        done = object()

        async def achat_stream() -> AsyncGenerator[ChatResponse, None]:
            while True:  # each step of the answer runs in a worker thread
                item = await asyncio.to_thread(next, stream, done)
                if item is done:
                    return
                yield item  # type: ignore[misc]

        response.achat_stream = achat_stream()
        return response
