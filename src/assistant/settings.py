"""Settings: environment variables with the ASSISTANT_ prefix, then an optional TOML file.

Precedence (highest first): keyword arguments, ASSISTANT_* environment variables, the TOML
file named by ASSISTANT_CONFIG (default ./assistant.toml when present), built-in defaults.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

GeneratorName = Literal["auto", "extractive", "local", "openai"]


def _config_file() -> Path:
    return Path(os.environ.get("ASSISTANT_CONFIG", "assistant.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSISTANT_", extra="ignore")

    # -- documents and index
    corpus_dir: Path = Field(Path("corpus"), description="Folder ingested by `assistant ingest`.")
    data_dir: Path = Field(Path("data"), description="Local state: embedded Chroma, model, logs.")
    chroma_url: str = Field(
        "", description="Chroma server URL (e.g. http://127.0.0.1:8000); empty = embedded store."
    )
    collection: str = Field("assistant", description="Name prefix of the Chroma collections "
                            "(the `default` collection's; other collections derive theirs).")
    max_open_collections: int = Field(
        8, ge=1, le=1000, description="Collections besides `default` whose retriever (chunk "
        "texts and keyword index) is held in memory at once; the least recently used one is "
        "let go first.")
    embedding_model: str = Field(
        "", description="Local path of a sentence-transformers model; empty = packaged MiniLM."
    )
    embedding_backend: Literal["onnx", "torch"] = Field(
        "onnx", description="onnx: the model exported once to ONNX (cached in data_dir/models/"
        "onnx) and run by onnxruntime, about twice as fast; torch: sentence-transformers. "
        "Their vectors are equal, so either reads an index the other built.")
    onnx_cache_dir: Path | None = Field(
        None, description="Where the ONNX export of the embedding model is cached; empty = "
        "data_dir/models/onnx.")
    chunk_chars: int = Field(900, description="Target chunk size in characters (fits 256 tokens).")
    chroma_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait for one call to a Chroma server before the store "
        "counts as unavailable.")
    ingest_lock_wait_s: float = Field(
        300.0, ge=0, description="How long an ingest waits for another ingest into the same "
        "index to finish before giving up.")
    ingest_batch_size: int = Field(
        256, ge=1, le=4096, description="Texts embedded and written to the new index "
        "generation per batch.")

    # -- retrieval
    top_k: int = Field(5, ge=1, le=50, description="Passages handed to the answerer.")
    candidates: int = Field(20, ge=1, le=200, description="Candidates per retriever before fusion.")
    hybrid: bool = Field(True, description="Fuse BM25 keyword search with dense retrieval.")
    sentence_search: bool = Field(True, description="Also rank chunks by their best-matching "
                                  "sentence (dense search over sentence vectors).")

    # -- answering
    generator: GeneratorName = Field(
        "auto", description="extractive | local | openai; auto = local when installed."
    )
    llm_model_path: str = Field("", description="GGUF file for the local generator.")
    llm_context_passages: int = Field(4, ge=1, le=20, description="Sources shown to the LLM.")
    llm_evidence_chars: int = Field(
        800, description="Characters of evidence in the prompt: the main latency cost on a "
        "CPU (doubled, with the sentence limit, for a question of two or more parts)."
    )
    llm_evidence_sentences: int = Field(
        8, ge=1, le=30, description="Most numbered evidence sentences shown to the model.")
    llm_evidence_min_score: float = Field(
        0.7, ge=0.0, le=1.0, description="Evidence sentences shown to the model score at "
        "least this share of the best one's score: fewer neighbours on the same topic for a "
        "small model to mistake for the answer (tuned on the development set).")
    llm_answer_style: Literal["write", "quote"] = Field(
        "write", description="write: the model answers in its words from the evidence it "
        "chose; quote: the answer is the chosen evidence, quoted.")
    outlines: bool = Field(
        True, description="When the evidence spans a section's parts, show the model the "
        "section's sub-headings as one more piece of evidence (a list whose items are "
        "headings), cited as the stretch of the document that holds them.")
    quote_confidence: float = Field(
        0.70, description="Extractive score above which a quoted answer stands in when the "
        "model finds no evidence (tuned on the development set).")
    verify_threshold: float = Field(
        0.80, ge=0.0, le=1.0, description="A checked model answer is withheld when the model's "
        "own check (a second short call: do its sources state what was asked?) gives it a "
        "probability of yes below this; 0 skips the check (tuned on the development set).")
    verify_skip_doubt: float = Field(
        0.0, ge=0.0, le=1.0, description="Skip the self-check for an answer whose evidence "
        "the model chose with a probability of 'none' below this (0.01 saved about 0.7 s of "
        "total time p50, and let through a false-premise answer the check would have "
        "withheld); 0, the default, checks every answer. Needs a backend that reports token "
        "probabilities.")
    openai_grammar: bool = Field(
        False, description="Send the reply grammar to the OpenAI-compatible server (llama.cpp's "
        "server honours it; OpenAI's API rejects it).")
    llm_max_tokens: int = Field(200, description="Longest generated answer, in tokens.")
    llm_timeout_s: float = Field(60.0, description="Give up on the model after this long.")
    llm_threads: int = Field(2, description="CPU threads for the local model.")
    openai_base_url: str = Field("", description="Base URL of an OpenAI-compatible server.")
    openai_model: str = Field("", description="Model name sent to the OpenAI-compatible server.")
    openai_api_key: str = Field("", description="API key for the OpenAI-compatible server.")
    max_question_chars: int = Field(2000, description="Longer questions are rejected.")
    max_turns: int = Field(40, description="Longest conversation history accepted.")

    # -- server
    host: str = Field("127.0.0.1", description="Bind address of `assistant serve`.")
    port: int = Field(7860, description="Port of `assistant serve`.")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to call the API and embed the widget; empty = own origin.",
    )
    api_key: str = Field("", description="When set, the HTTP API requires this bearer key.")
    admin_key: str = Field(
        "", description="When set, document management (/api/documents and the page's "
        "Documents tab) is on and requires this bearer key; empty = off.")
    collection_origins: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per collection, the only other origins whose pages may use it (they "
        "must be allowed_origins too); a collection not named here is open to every allowed "
        "origin.")
    upload_max_bytes: int = Field(10_000_000, ge=1, description="Largest uploaded file, in "
                                  "bytes.")
    upload_max_files: int = Field(10, ge=1, le=1000, description="Most files in one upload "
                                  "request.")
    rate_limit_per_minute: int = Field(60, description="Requests per minute per client.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="IPs of reverse proxies whose X-Forwarded-For is honoured; empty = none.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values the server answers; empty = 127.0.0.1, localhost, "
                    "[::1] and the bind address.",
    )
    max_header_bytes: int = Field(65536, ge=1024, description="Largest request head "
                                  "(request line and headers), in bytes.")
    header_timeout_s: float = Field(10.0, gt=0, description="Time a client has to send "
                                    "a request's line and headers.")
    body_timeout_s: float = Field(30.0, gt=0, description="Time a client has to send a "
                                  "request body.")
    keep_alive_timeout_s: int = Field(5, ge=1, description="Idle keep-alive connections "
                                      "are closed after this long.")
    llm_queue_size: int = Field(4, description="Waiting requests for the local model.")

    @field_validator("collection_origins")
    @classmethod
    def _collection_names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        from .catalog import valid_name

        for name in value:
            valid_name(name)  # a CollectionError is a ValueError: pydantic reports it
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def fingerprint(self) -> str:
        """A short hash of the settings that shape answers, stored with evaluation results."""
        keys = ["embedding_model", "chunk_chars", "top_k", "candidates", "hybrid",
                "sentence_search", "generator",
                "llm_model_path", "llm_evidence_chars", "llm_evidence_sentences",
                "llm_evidence_min_score", "quote_confidence", "llm_answer_style",
                "verify_threshold", "verify_skip_doubt", "outlines", "openai_model"]
        blob = json.dumps({k: str(getattr(self, k)) for k in keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def onnx_dir(self) -> Path:
        return self.onnx_cache_dir or self.data_dir / "models" / "onnx"

    def with_overrides(self, **changes: Any) -> Settings:
        return self.model_copy(update=changes)
