"""The chat-model interface every front end talks to, and its errors.

Messages are OpenAI-style dicts: ``{"role": "system"|"user"|"assistant", "content": str}``.
Implementations: :class:`assistant.llm.local.LocalLlama` (in-process llama.cpp) and
:class:`assistant.llm.openai_compat.OpenAICompatible` (any ``/v1/chat/completions`` server).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Protocol, TypedDict, runtime_checkable


class LLMError(RuntimeError):
    """The model could not answer: server down, timeout, bad model file, malformed reply."""


class LLMBusy(LLMError):
    """Too many callers are already waiting for the model; try again later (HTTP 503)."""


class LLMCancelled(LLMError):
    """The caller went away (see `caller_gone`) before the model had started answering."""


# Set, in the caller's context, to an Event that is set once nobody wants the answer any more
# (an HTTP client disconnected): a model still waiting for its turn or for its first token
# gives up instead of working for nobody. Closing the stream's generator covers the rest.
caller_gone: ContextVar[threading.Event | None] = ContextVar("caller_gone", default=None)


YES_NO = 'root ::= "yes" | "no"'  # GBNF for a one-word verdict
TOP_LOGPROBS = 5  # alternatives reported per generated token when a caller asks for them


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int


Message = dict[str, str]


@runtime_checkable
class ChatModel(Protocol):
    """A chat model that streams text deltas."""

    name: str  # e.g. "local:qwen2.5-coder-1.5b-instruct-q4_k_m" or "openai:<model>"
    last_usage: Usage | None  # token counts of the most recent finished stream, if known

    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        timeout_s: float | None = None,
        grammar: str | None = None,
        usage: dict[str, int] | None = None,
        token_probs: list[dict[str, Any]] | None = None,
    ) -> Iterator[str]:
        """Yield text deltas as they are generated. Raises LLMError (or LLMBusy).

        `grammar` (GBNF) constrains the reply where the backend supports it; `usage`, when
        given, receives this call's token counts (per call, so concurrent answers never
        read each other's figures); `token_probs`, when given, receives each generated
        token with its likeliest alternatives (OpenAI's logprobs entries) where the
        backend reports them, and stays empty where it does not."""
        ...

    def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        timeout_s: float | None = None,
        grammar: str | None = None,
        usage: dict[str, int] | None = None,
    ) -> str:
        """The whole answer as one string (joins :meth:`stream`)."""
        ...


def validate_messages(messages: list[Message]) -> None:
    """Reject malformed messages early with a clear error rather than a server 400/500."""
    if not messages:
        raise ValueError("messages must not be empty")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}] needs role system|user|assistant, got {m!r:.80}")
        if not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}]['content'] must be a str")


class StreamingChatModel(ABC):
    """Base giving :meth:`complete` to any class that implements ``stream``."""

    name: str = "unnamed"
    last_usage: Usage | None = None

    @abstractmethod
    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        timeout_s: float | None = None,
        grammar: str | None = None,
        usage: dict[str, int] | None = None,
        token_probs: list[dict[str, Any]] | None = None,
    ) -> Iterator[str]:
        """Yield text deltas as they are generated (see `ChatModel.stream`)."""

    def yes_probability(self, messages: list[Message], *, timeout_s: float | None = None,
                        usage: dict[str, int] | None = None) -> float:
        """The model's probability of answering "yes" rather than "no" to `messages`.
        This default knows only the answer it samples (1.0 or 0.0); a backend that exposes
        token probabilities gives the probability itself."""
        reply = self.complete(messages, max_tokens=2, timeout_s=timeout_s, grammar=YES_NO,
                              usage=usage)
        return 1.0 if reply.strip().lower().startswith("yes") else 0.0

    def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        timeout_s: float | None = None,
        grammar: str | None = None,
        usage: dict[str, int] | None = None,
    ) -> str:
        return "".join(
            self.stream(
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=stop,
                timeout_s=timeout_s,
                grammar=grammar,
                usage=usage,
            )
        )
