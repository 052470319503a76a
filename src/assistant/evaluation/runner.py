"""Run configurations (and the naive llama-index baseline) over a question set.

Each configuration is a generator plus settings overrides, written on the command line as
`extractive`, `extractive:hybrid=false`, `extractive:top_k=3,candidates=40` or
`local:llm_context_passages=3`. Indexes are built in a work folder the runner manages: the
corpus (and any extra sources) is ingested once per embedding model and shared by every
configuration that uses that model.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import Settings
from ..types import Message
from .dataset import Item
from .scoring import ItemResult, cited_evidence, score_item, summarise

log = logging.getLogger(__name__)

RETRIEVE_K = 10  # passages retrieved for hit@k / MRR (k up to 10)
GENERATORS = ("extractive", "local", "openai")

OnItem = Callable[[ItemResult], None]


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class Config:
    """One configuration to evaluate."""

    name: str
    generator: str = "extractive"
    overrides: tuple[tuple[str, Any], ...] = ()
    baseline: bool = False  # the naive llama-index query engine instead of the assistant

    @classmethod
    def parse(cls, spec: str) -> Config:
        """"extractive:hybrid=false,top_k=3" -> Config; "baseline" / "baseline:local" too."""
        head, _, rest = spec.partition(":")
        head = head.strip()
        baseline = head == "baseline"
        overrides: list[tuple[str, Any]] = []
        generator = "extractive"
        if baseline:
            if rest and "=" not in rest.split(",")[0]:
                generator, _, rest = rest.partition(",")
                generator = generator.strip()
        elif head:
            generator = head
        if generator not in GENERATORS:
            raise ValueError(f"unknown generator {generator!r} in {spec!r} "
                             f"(choose from {', '.join(GENERATORS)})")
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or key not in Settings.model_fields:
                raise ValueError(f"bad setting {part!r} in {spec!r}: use name=value with a "
                                 "setting name such as top_k, hybrid, sentence_search, candidates, "
                                 "embedding_model")
            if key in ("data_dir", "corpus_dir", "generator"):
                raise ValueError(f"{key} is managed by the runner; it cannot be overridden")
            overrides.append((key, _parse_value(value)))
        return cls(name=spec.strip(), generator=generator, overrides=tuple(overrides),
                   baseline=baseline)

    def settings(self, base: Settings, data_dir: Path) -> Settings:
        values = dict(self.overrides)
        return base.with_overrides(data_dir=data_dir, generator=self.generator, **values)

    @property
    def embedding_model(self) -> str:
        return str(dict(self.overrides).get("embedding_model", ""))


@dataclass
class RunResult:
    config: Config
    results: list[ItemResult] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""  # why the configuration could not run
    chat_model: Any = None  # the language model a generator configuration used
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.name,
            "generator": self.config.generator,
            "baseline": self.config.baseline,
            "overrides": dict(self.config.overrides),
            "settings": self.settings,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 1),
            "summary": self.summary,
            "items": [r.to_json() for r in self.results],
        }


class IndexCache:
    """Ingests the sources once per embedding model into `root`, and reuses the index."""

    def __init__(self, root: Path, sources: Sequence[Path], base: Settings) -> None:
        self.root = root
        self.sources = [Path(s) for s in sources]
        self.base = base
        self.info: dict[str, dict[str, Any]] = {}

    def data_dir(self, embedding_model: str) -> Path:
        key = hashlib.sha256(
            "|".join([embedding_model, *map(str, self.sources)]).encode()).hexdigest()[:10]
        path = self.root / f"index-{key}"
        if key not in self.info:
            from ..core import Assistant

            settings = self.base.with_overrides(data_dir=path, embedding_model=embedding_model,
                                                generator="extractive",
                                                onnx_cache_dir=self.base.onnx_dir())
            report = Assistant(settings).ingest(self.sources)
            if not report.ok:
                raise RuntimeError(f"ingest failed: {report.failures}")
            self.info[key] = {"embedding_model": embedding_model or "all-MiniLM-L6-v2",
                              "documents": report.documents, "chunks": report.chunks,
                              "ingest_s": round(report.seconds, 2),
                              "embedded_chunks": report.embedded_chunks}
            log.info("index %s: %s", path, self.info[key])
        return path


def _assistant_generators(assistant: Any) -> list[str]:
    try:
        return list(assistant.generators)
    except Exception:  # an older core without the property
        return [getattr(assistant, "mode", "extractive")]


def ask_item(assistant: Any, item: Item, generator: str) -> tuple[Any, float | None, float, str,
                                                                     bool]:
    """Ask the history turns, then time the item's question: (answer, ttft_ms, total_ms,
    error, crashed)."""
    from ..core import Delta, Final, InputError

    history: list[Message] = []
    for turn in item.history:
        first = assistant.ask(turn, history, generator=generator)
        history += [Message("user", turn), Message("assistant", first.answer)]
    final = None
    ttft: float | None = None
    t0 = time.perf_counter()
    try:
        for event in assistant.stream(item.question, history, generator=generator):
            if isinstance(event, Delta) and ttft is None and event.text:
                ttft = (time.perf_counter() - t0) * 1000
            elif isinstance(event, Final):
                final = event.answer
    except InputError as exc:
        return None, None, (time.perf_counter() - t0) * 1000, str(exc), False
    except Exception as exc:  # reported per item; the run goes on
        log.exception("item %s failed", item.id)
        return None, None, (time.perf_counter() - t0) * 1000, f"{type(exc).__name__}: {exc}", True
    total = (time.perf_counter() - t0) * 1000
    return final, (ttft if ttft is not None else total), total, "", False


def run_assistant(config: Config, items: Sequence[Item], settings: Settings,
                  on_item: OnItem | None = None) -> RunResult:
    from ..core import Assistant

    run = RunResult(config=config, settings={"fingerprint": settings.fingerprint(),
                                             **_shown_settings(settings)})
    t0 = time.perf_counter()
    assistant = Assistant(settings)
    available = _assistant_generators(assistant)
    if config.generator not in available:
        run.skipped = (f"generator {config.generator!r} is not available here "
                       f"(this build offers: {', '.join(available)})")
        return run
    if config.generator != "extractive" and hasattr(assistant, "chat_model"):
        run.chat_model = assistant.chat_model(config.generator)  # the baseline shares it
    assistant.warm_up()  # as `assistant serve` does before its first visitor
    retriever = assistant.retriever
    for item in items:
        answer, ttft, total, error, crashed = ask_item(assistant, item, config.generator)
        query = (answer.rewritten_question if answer is not None and answer.rewritten_question
                 else item.question).strip()
        passages = retriever.retrieve(query, RETRIEVE_K) if query and not error else []
        result = score_item(
            item,
            answer=answer.answer if answer is not None else "",
            refused=bool(answer.refused) if answer is not None else False,
            citations=cited_evidence(answer),
            retrieved=[p.text for p in passages],
            error=error, crashed=crashed,
            quotes=[c.text for c in answer.citations] if answer is not None else (),
        )
        if answer is not None:
            result.mode = answer.mode
            result.rewritten_question = answer.rewritten_question
            result.notes = list(answer.notes)
            result.prompt_tokens = int(answer.usage.get("prompt_tokens", 0))
            result.citations = [c.public() for c in answer.citations]
            result.grounding = getattr(answer, "grounding", "")
            result.self_check_skipped = bool(answer.usage.get("self_check_skipped"))
        result.retrieved = [{"rank": i, "section": p.section, "document": p.document,
                             "id": p.id} for i, p in enumerate(passages, 1)]
        result.ttft_ms, result.total_ms = ttft, total
        run.results.append(result)
        if on_item:
            on_item(result)
    run.summary = summarise(run.results)
    run.seconds = time.perf_counter() - t0
    return run


def run_baseline(config: Config, items: Sequence[Item], settings: Settings,
                 on_item: OnItem | None = None, model_data_dir: Path | None = None,
                 chat_model: Any = None) -> RunResult:
    from .baseline import NaiveBaseline

    run = RunResult(config=config, settings={"fingerprint": settings.fingerprint(),
                                             **_shown_settings(settings)})
    t0 = time.perf_counter()
    try:
        baseline = (NaiveBaseline(settings, chat_model) if chat_model is not None else
                    NaiveBaseline.from_settings(settings, model_data_dir=model_data_dir))
    except Exception as exc:  # e.g. no local model installed
        run.skipped = f"baseline unavailable: {type(exc).__name__}: {exc}"
        return run
    try:
        for item in items:
            result = baseline.evaluate(item)
            run.results.append(result)
            if on_item:
                on_item(result)
    finally:
        if chat_model is None:
            baseline.close()
    run.summary = summarise(run.results)
    run.seconds = time.perf_counter() - t0
    return run


def _shown_settings(s: Settings) -> dict[str, Any]:
    keys = ["generator", "top_k", "candidates", "hybrid", "sentence_search", "embedding_model",
            "chunk_chars", "llm_evidence_chars", "llm_evidence_sentences", "llm_evidence_min_score",
            "quote_confidence", "llm_max_tokens"]
    return {k: str(getattr(s, k)) if k == "embedding_model" else getattr(s, k) for k in keys}


def run_all(configs: Sequence[Config], items: Sequence[Item], base: Settings, cache: IndexCache,
            on_item_factory: Callable[[Config, int], OnItem | None] | None = None
            ) -> list[RunResult]:
    """Run every configuration over `items`, each over the index of its embedding model."""
    runs: list[RunResult] = []
    model_data_dir = base.data_dir  # where the local model lives (data/models)
    for config in configs:
        data_dir = cache.data_dir(config.embedding_model)
        settings = config.settings(base, data_dir).with_overrides(
            onnx_cache_dir=base.onnx_dir())  # one export, not one per temporary index
        if settings.generator != "extractive" and not settings.llm_model_path:
            from ..llm import default_model_path

            path = default_model_path(model_data_dir)
            if path.is_file():
                settings = settings.with_overrides(llm_model_path=str(path))
        mates = [r for r in runs if not r.config.baseline
                 and r.config.generator == config.generator]
        if config.baseline and mates and all(r.skipped for r in mates):
            runs.append(RunResult(config=config, skipped="its generator's configurations "
                                  "did not run"))
            continue
        on_item = on_item_factory(config, len(items)) if on_item_factory else None
        log.info("running %s", config.name)
        if config.baseline:
            shared = next((r.chat_model for r in mates if r.chat_model is not None), None)
            run = run_baseline(config, items, settings, on_item, model_data_dir=model_data_dir,
                               chat_model=shared)
        else:
            run = run_assistant(config, items, settings, on_item)
        runs.append(run)
    for run in runs:  # the models are no longer needed
        close = getattr(run.chat_model, "close", None)
        if close:
            close()
        run.chat_model = None
    return runs


def sample(items: Sequence[Item], n: int) -> list[Item]:
    """A deterministic sample of `n` items spread over the categories (round robin, in file
    order), for slow configurations; the result keeps the file's order."""
    by_cat: dict[str, list[Item]] = {}
    for item in items:
        by_cat.setdefault(item.category, []).append(item)
    chosen: set[str] = set()
    depth = 0
    while len(chosen) < min(n, len(items)):
        for group in by_cat.values():
            if depth < len(group) and len(chosen) < n:
                chosen.add(group[depth].id)
        depth += 1
    return [i for i in items if i.id in chosen]
