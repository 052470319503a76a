"""Language-model layer: one streaming chat interface, two back ends.

- :class:`LocalLlama`: the packaged Qwen2.5-Coder-1.5B-Instruct GGUF run in-process by llama.cpp.
- :class:`OpenAICompatible`: any ``/v1/chat/completions`` server (e.g. the one started by
  :func:`start_llamacpp_server`).

Heavy imports (xllamacpp) happen only when a local model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import (
    ChatModel,
    LLMBusy,
    LLMCancelled,
    LLMError,
    Message,
    StreamingChatModel,
    Usage,
)
from .local import LocalLlama
from .local_model import (
    MODEL_NAME,
    assemble_model,
    default_model_path,
    ensure_model,
    packaged_model_available,
    verify_model,
)
from .openai_compat import OpenAICompatible

if TYPE_CHECKING:
    from .llamacpp_server import LlamaCppServer, start_llamacpp_server


def __getattr__(name: str) -> Any:
    # Imported lazily so `python -m assistant.llm.llamacpp_server` does not find its own
    # module already half-imported by this package (runpy warns about that).
    if name in ("LlamaCppServer", "start_llamacpp_server"):
        from . import llamacpp_server

        return getattr(llamacpp_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MODEL_NAME",
    "ChatModel",
    "LLMBusy",
    "LLMCancelled",
    "LLMError",
    "LlamaCppServer",
    "LocalLlama",
    "Message",
    "OpenAICompatible",
    "StreamingChatModel",
    "Usage",
    "assemble_model",
    "default_model_path",
    "ensure_model",
    "local_chat_model",
    "openai_chat_model",
    "packaged_model_available",
    "start_llamacpp_server",
    "verify_model",
]


def local_chat_model(
    data_dir: Path, *, n_ctx: int = 2048, n_threads: int = 2, max_queue: int = 2, load: bool = False
) -> LocalLlama:
    """Factory: assemble/verify the packaged model under `data_dir` and wrap it.
    `load=True` loads the weights now instead of on first use."""
    model = LocalLlama(
        ensure_model(data_dir), n_ctx=n_ctx, n_threads=n_threads, max_queue=max_queue
    )
    if load:
        model.load()
    return model


def openai_chat_model(
    base_url: str, model: str, api_key: str | None = None, timeout_s: float = 60
) -> OpenAICompatible:
    """Factory for a remote/other OpenAI-compatible server."""
    return OpenAICompatible(base_url, model, api_key=api_key, timeout_s=timeout_s)
