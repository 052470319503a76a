"""The naive baseline: a plain llama-index VectorStoreIndex query engine over the same corpus.

It reads the very Chroma collection the assistant serves (the store writes plain metadata
that llama-index's ChromaVectorStore understands) and embeds questions with the same
sentence-transformers model, loaded by local path through llama-index's HuggingFaceEmbedding.

- Without a language model (the extractive configuration's baseline) the query engine runs
  with the `NoText` synthesizer, and the answer is the top-1 retrieved node, every sentence
  cited [1]. It never refuses.
- With a language model (local / openai) the same ChatModel as the assistant's generator is
  wrapped in a small llama-index `CustomLLM` adapter, and the query engine streams its answer
  with llama-index's default prompts over `llm_context_passages` nodes. Its sources are
  numbered 1..k in retrieval order; it cites only when the model writes [n] on its own. A
  reply that says the context lacks the answer (REFUSAL_PATTERNS) counts as a refusal.
- A query engine has no conversation memory: a follow-up is asked as it stands.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..settings import Settings
from ..text import sentence_spans
from .dataset import Item
from .scoring import ItemResult, score_item

REFUSAL_PATTERNS = re.compile(
    r"couldn't find this in the documents|(?:does|do) not (?:provide|mention|contain|include|"
    r"say|specify|state)|no (?:information|mention)|not (?:provided|mentioned|found|stated|"
    r"specified) in|cannot (?:answer|find|be answered)|can't (?:answer|find)|"
    r"unable to (?:answer|find)|i don't know",
    re.IGNORECASE,
)


def cite_every_sentence(text: str, n: int = 1) -> str:
    """'A. B.' -> 'A [1]. B [1].' (the baseline's answer is one quoted passage)."""
    parts = []
    for a, b in sentence_spans(text):
        s = text[a:b].strip()
        if s and s[-1] in ".!?;:":
            parts.append(f"{s[:-1]} [{n}]{s[-1]}")
        else:
            parts.append(f"{s} [{n}]")
    return "\n".join(parts)


def _chat_model_llm(chat_model: Any, max_tokens: int, context_window: int) -> Any:
    """A llama-index LLM that talks to one of our ChatModels (assistant.llm)."""
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        CompletionResponse,
        LLMMetadata,
        MessageRole,
    )
    from llama_index.core.llms import CustomLLM
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback

    def plain(messages: Sequence[Any]) -> list[dict[str, str]]:
        return [{"role": m.role.value if hasattr(m.role, "value") else str(m.role),
                 "content": m.content or ""} for m in messages]

    class ChatModelLLM(CustomLLM):
        model_name: str = "chat-model"

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=context_window, num_output=max_tokens,
                               is_chat_model=True, model_name=self.model_name)

        @llm_chat_callback()
        def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
            text = chat_model.complete(plain(messages), max_tokens=max_tokens)
            return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

        @llm_chat_callback()
        def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any
                        ) -> Iterator[ChatResponse]:
            def gen() -> Iterator[ChatResponse]:
                content = ""
                for delta in chat_model.stream(plain(messages), max_tokens=max_tokens):
                    content += delta
                    yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT,
                                                           content=content), delta=delta)
            return gen()

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any
                     ) -> CompletionResponse:
            return CompletionResponse(text=chat_model.complete(
                [{"role": "user", "content": prompt}], max_tokens=max_tokens))

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any
                            ) -> Iterator[CompletionResponse]:
            def gen() -> Iterator[CompletionResponse]:
                text = ""
                for delta in chat_model.stream([{"role": "user", "content": prompt}],
                                               max_tokens=max_tokens):
                    text += delta
                    yield CompletionResponse(text=text, delta=delta)
            return gen()

    return ChatModelLLM(model_name=getattr(chat_model, "name", "chat-model"))


def chat_model_for(settings: Settings, model_data_dir: Path | None = None) -> Any:
    """The ChatModel the assistant's `settings.generator` would use."""
    if settings.generator == "local":
        from ..llm import LocalLlama, default_model_path

        path = Path(settings.llm_model_path) if settings.llm_model_path else \
            default_model_path(model_data_dir or settings.data_dir)
        if not path.is_file():
            raise FileNotFoundError(f"no local model at {path}")
        return LocalLlama(path, n_threads=settings.llm_threads)
    if settings.generator == "openai":
        from ..llm import openai_chat_model

        return openai_chat_model(settings.openai_base_url, settings.openai_model,
                                 settings.openai_api_key or None, settings.llm_timeout_s)
    return None


class NaiveBaseline:
    def __init__(self, settings: Settings, chat_model: Any = None) -> None:
        from llama_index.core import VectorStoreIndex
        from llama_index.core.llms import MockLLM
        from llama_index.core.response_synthesizers.no_text import NoText
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding
        from llama_index.vector_stores.chroma import ChromaVectorStore

        from ..embeddings import packaged_model_path
        from ..store import ChromaIndex

        self.settings = settings
        self.chat_model = chat_model
        store = ChromaIndex(settings.data_dir, settings.chroma_url, settings.collection)
        collection = store.active_collection()
        if collection is None:
            raise RuntimeError(f"no index in {settings.data_dir}: ingest first")
        embed = HuggingFaceEmbedding(
            model_name=settings.embedding_model or packaged_model_path(), device="cpu")
        self.index = VectorStoreIndex.from_vector_store(
            ChromaVectorStore(chroma_collection=collection), embed_model=embed)
        self.retriever = self.index.as_retriever(similarity_top_k=10)
        if chat_model is None:
            self.top_k = settings.top_k
            self.engine = self.index.as_query_engine(
                llm=MockLLM(), response_synthesizer=NoText(llm=MockLLM()),
                similarity_top_k=self.top_k)
        else:
            self.top_k = settings.llm_context_passages
            llm = _chat_model_llm(chat_model, settings.llm_max_tokens, 4096)
            self.engine = self.index.as_query_engine(llm=llm, similarity_top_k=self.top_k,
                                                     streaming=True)
        self.mode = "baseline:" + (settings.generator if chat_model is not None else "top-1")

    @classmethod
    def from_settings(cls, settings: Settings, model_data_dir: Path | None = None
                      ) -> NaiveBaseline:
        return cls(settings, chat_model_for(settings, model_data_dir))

    def close(self) -> None:
        close = getattr(self.chat_model, "close", None)
        if close:
            close()

    def answer(self, question: str) -> tuple[str, list[str], float, float]:
        """(answer text, cited passage texts numbered from 1, ttft_ms, total_ms)."""
        t0 = time.perf_counter()
        response: Any = self.engine.query(question)
        if self.chat_model is None:
            nodes = response.source_nodes
            top = nodes[0].node.get_content() if nodes else ""
            total = (time.perf_counter() - t0) * 1000
            return cite_every_sentence(top) if top else "", [top] if top else [], total, total
        ttft = None
        text = ""
        for delta in response.response_gen:
            if ttft is None and delta:
                ttft = (time.perf_counter() - t0) * 1000
            text += delta
        total = (time.perf_counter() - t0) * 1000
        sources = [n.node.get_content() for n in response.source_nodes]
        return text.strip(), sources, ttft if ttft is not None else total, total

    def retrieve(self, question: str) -> list[Any]:
        return [n.node for n in self.retriever.retrieve(question)]

    def evaluate(self, item: Item) -> ItemResult:
        question = item.question
        error = ""
        crashed = False
        answer: str = ""
        sources: list[str] = []
        ttft: float | None = None
        total: float | None = None
        try:
            answer, sources, ttft, total = self.answer(question)
        except Exception as exc:  # a naive engine may fail on junk input; that is a result
            error, crashed = f"{type(exc).__name__}: {exc}", True
        refused = bool(answer) and self.chat_model is not None and \
            bool(REFUSAL_PATTERNS.search(answer))
        try:
            nodes = self.retrieve(question) if question.strip() else []
        except Exception:
            nodes = []
        result = score_item(item, answer=answer, refused=refused,
                            citations={i: t for i, t in enumerate(sources, 1)},
                            retrieved=[n.get_content() for n in nodes], error=error,
                            crashed=crashed,
                            quotes=[t for i, t in enumerate(sources, 1) if f"[{i}]" in answer])
        result.mode = self.mode
        result.ttft_ms, result.total_ms = ttft, total
        result.citations = [{"id": i, "text": t} for i, t in enumerate(sources, 1)
                            if f"[{i}]" in answer]
        result.retrieved = [{"rank": i, "section": n.metadata.get("section", ""),
                             "document": n.metadata.get("document", ""), "id": n.node_id}
                            for i, n in enumerate(nodes, 1)]
        return result
