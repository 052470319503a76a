"""The one core object every front end uses: `Assistant`.

A question enters at `Assistant.stream()` (or `ask()`, which collects the stream): it is
validated, rewritten into a standalone question when it is a follow-up, passages come from
the hybrid retriever, and an answerer turns them into a cited answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import conversation
from .answerers import extractive
from .embeddings import Embedder, load_embedder
from .ingest import IngestReport, Progress, ingest
from .retrieval import HybridRetriever
from .settings import Settings
from .store import ChromaIndex
from .types import Answer, Message

log = logging.getLogger(__name__)


class InputError(ValueError):
    """A question or conversation the assistant cannot take; the message says why."""


class BusyError(RuntimeError):
    """The language model's queue is full; the caller should try again shortly."""


@dataclass(frozen=True)
class Delta:
    """A piece of answer text, as it is produced."""

    text: str


@dataclass(frozen=True)
class Final:
    """The complete answer with its checked citations; always the last event."""

    answer: Answer


Event = Delta | Final


def validate(question: object, history: Sequence[Message], settings: Settings) -> str:
    if not isinstance(question, str):
        raise InputError("The question must be a string.")
    q = question.strip()
    if not q:
        raise InputError("The question is empty.")
    if len(q) > settings.max_question_chars:
        raise InputError(
            f"The question is too long ({len(q)} characters; the limit is "
            f"{settings.max_question_chars})."
        )
    if len(history) > settings.max_turns:
        raise InputError(
            f"The conversation is too long ({len(history)} turns; the limit is "
            f"{settings.max_turns}). Start a new conversation."
        )
    return q


class Assistant:
    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        index: ChromaIndex | None = None,
    ) -> None:
        self.settings = settings
        self.embedder: Embedder = embedder or load_embedder(settings.embedding_model)
        self.index = index or ChromaIndex(settings.data_dir, settings.chroma_url,
                                          settings.collection)
        self._retriever: HybridRetriever | None = None
        self.extractive = extractive.ExtractiveAnswerer(self.embedder.embed)
        self.mode = "extractive"

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> Assistant:
        settings = settings or Settings()
        if overrides:
            settings = settings.with_overrides(**overrides)
        return cls(settings)

    # -- documents -------------------------------------------------------------------------
    def ingest(self, paths: Sequence[Path] | None = None, *, sync: bool = True,
               progress: Progress | None = None) -> IngestReport:
        sources = list(paths) if paths else [self.settings.corpus_dir]
        report = ingest(self.index, self.embedder, sources, sync=sync,
                        chunk_chars=self.settings.chunk_chars, progress=progress)
        if self._retriever is not None:
            self._retriever.refresh(force=True)
        return report

    @property
    def retriever(self) -> HybridRetriever:
        if self._retriever is None:
            self._retriever = HybridRetriever(
                self.index, self.embedder, candidates=self.settings.candidates,
                hybrid=self.settings.hybrid,
            )
        return self._retriever

    def health(self) -> dict[str, Any]:
        r = self.retriever
        r.refresh()
        return {
            "documents": len(r.documents),
            "chunks": len(r.chunks),
            "generator": self.mode,
            "store": "server" if self.settings.chroma_url else "embedded",
            "embedding_model": getattr(self.embedder, "name", ""),
        }

    # -- questions -------------------------------------------------------------------------
    @property
    def generators(self) -> list[str]:
        """Generators this instance can use, the default first."""
        return [self.mode]

    def ask(self, question: str, history: Sequence[Message] = (),
            generator: str | None = None) -> Answer:
        final: Answer | None = None
        for event in self.stream(question, history, generator):
            if isinstance(event, Final):
                final = event.answer
        assert final is not None  # stream() always ends with Final
        return final

    def stream(self, question: str, history: Sequence[Message] = (),
               generator: str | None = None) -> Iterator[Event]:
        """Answer `question` given earlier turns: Delta events, then one Final event.

        Raises InputError for a question it cannot take, BusyError when the model is busy
        (both before the first event).
        """
        t0 = time.perf_counter()
        q = validate(question, history, self.settings)
        standalone = conversation.rewrite(q, history)
        t1 = time.perf_counter()
        parts = conversation.split_parts(standalone)
        answers = []
        for part in parts:  # a two-part question gets passages for each part
            query_vec = self.retriever.embed_query(part)
            passages = self.retriever.retrieve(part, self.settings.top_k, query_vec)
            answers.append(self.extractive.answer(part, passages,
                                                  self.retriever.bm25.term_weight, query_vec))
        t2 = time.perf_counter()
        result = answers[0] if len(answers) == 1 else extractive.merge(answers)
        t3 = time.perf_counter()
        result.rewritten_question = standalone if standalone != q else ""
        result.timings_ms.update({
            "rewrite": (t1 - t0) * 1000,
            "retrieve": (t2 - t1) * 1000,
            "generate": (t3 - t2) * 1000,
            "first_token": (t3 - t0) * 1000,
            "total": (t3 - t0) * 1000,
        })
        yield Delta(result.answer)
        yield Final(result)
