"""ChatModel for any OpenAI-compatible ``/v1/chat/completions`` server, streamed over SSE.

Works with llama.cpp's server (see :mod:`assistant.llm.llamacpp_server`), vLLM, Ollama's
OpenAI endpoint, LM Studio, or OpenAI itself. ``base_url`` follows the ``openai`` client's
convention and includes the ``/v1`` prefix, e.g. ``http://127.0.0.1:8080/v1``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from typing import Any

import httpx

from .base import (
    TOP_LOGPROBS,
    LLMBusy,
    LLMError,
    Message,
    StreamingChatModel,
    Usage,
    validate_messages,
)

_EXCERPT = 300


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"


class OpenAICompatible(StreamingChatModel):
    """Streams chat completions from an OpenAI-compatible server. Thread-safe (httpx.Client
    is); ``last_usage`` reflects whichever stream finished last."""

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 60,
        send_grammar: bool = False,
    ) -> None:
        self.send_grammar = send_grammar
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai:{model}"
        self.timeout_s = timeout_s
        self.last_usage: Usage | None = None
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # trust_env=False: never route through a proxy from the environment; requests go
        # exactly to base_url.
        self._client = httpx.Client(headers=headers, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAICompatible:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
    ) -> Generator[str, None, None]:
        validate_messages(messages)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if stop:
            body["stop"] = stop
        if grammar and self.send_grammar:
            body["grammar"] = grammar  # llama.cpp's server honours it; OpenAI would refuse it
        if token_probs is not None and self.send_grammar:
            # Asked only of a server known to be llama.cpp's: some models behind other
            # servers reject the field, which would cost the whole answer.
            body.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        return self._stream(body, self.timeout_s if timeout_s is None else timeout_s, usage,
                            token_probs)

    def _stream(self, body: dict[str, Any], timeout_s: float,
                usage: dict[str, int] | None = None,
                token_probs: list[dict[str, Any]] | None = None
                ) -> Generator[str, None, None]:
        url = f"{self.base_url}/chat/completions"
        deadline = time.monotonic() + timeout_s
        # httpx's read timeout bounds each wait for bytes; the deadline bounds the whole call.
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        try:
            with self._client.stream("POST", url, json=body, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    msg = (
                        f"LLM server at {self.base_url} returned HTTP {resp.status_code}: "
                        f"{_excerpt(resp.text)}"
                    )
                    # 429/503: overloaded or still loading; callers may retry later.
                    raise (LLMBusy if resp.status_code in (429, 503) else LLMError)(msg)
                ctype = resp.headers.get("content-type", "")
                if "text/event-stream" not in ctype:
                    # Some servers ignore stream=true and answer with one JSON body.
                    resp.read()
                    yield from self._whole_json(resp.text, usage)
                    return
                yield from self._parse_sse(resp, deadline, timeout_s, usage, token_probs)
        except httpx.ConnectError as e:
            raise LLMError(f"cannot reach LLM server at {self.base_url}: {e}") from e
        except httpx.TimeoutException as e:
            raise LLMError(
                f"timed out after {timeout_s:g} s waiting for LLM server at {self.base_url}"
            ) from e
        except httpx.HTTPError as e:  # connection reset mid-stream, protocol errors
            raise LLMError(f"LLM server at {self.base_url} failed: {type(e).__name__}: {e}") from e

    def _parse_sse(
        self, resp: httpx.Response, deadline: float, timeout_s: float,
        usage_out: dict[str, int] | None = None,
        token_probs: list[dict[str, Any]] | None = None,
    ) -> Generator[str, None, None]:
        finished = False
        data_lines: list[str] = []

        def handle(payload: str) -> Generator[str, None, None]:
            nonlocal finished
            try:
                chunk = json.loads(payload)
            except ValueError:
                raise LLMError(
                    f"malformed SSE data from {self.base_url}: {_excerpt(payload)}"
                ) from None
            if not isinstance(chunk, dict):
                raise LLMError(f"malformed SSE data from {self.base_url}: {_excerpt(payload)}")
            if "error" in chunk:
                err = chunk["error"]
                msg = err.get("message", err) if isinstance(err, dict) else err
                raise LLMError(
                    f"LLM server at {self.base_url} reported an error: {_excerpt(str(msg))}"
                )
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                probs = (choice.get("logprobs") or {}).get("content")
                if token_probs is not None and isinstance(probs, list):
                    token_probs.extend(p for p in probs if isinstance(p, dict))
                if text:
                    yield text
                if choice.get("finish_reason"):
                    finished = True
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                self._record_usage(usage, usage_out)

        for line in resp.iter_lines():
            if time.monotonic() > deadline:
                raise LLMError(f"timed out after {timeout_s:g} s streaming from {self.base_url}")
            if line == "":  # blank line ends an event; data lines of one event are joined
                if data_lines:
                    payload = "\n".join(data_lines)
                    data_lines = []
                    if payload.strip() == "[DONE]":
                        return
                    yield from handle(payload)
                continue
            if line.startswith(":"):  # SSE comment / keep-alive ping
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data_lines.append(value)
            elif field == "error":  # llama.cpp sends "error: {json}" for mid-stream failures
                raise LLMError(
                    f"LLM server at {self.base_url} reported an error: {_excerpt(value)}"
                )
            # other fields (event, id, retry) carry nothing we need
        if data_lines:  # stream ended without a trailing blank line
            payload = "\n".join(data_lines)
            if payload.strip() == "[DONE]":
                return
            yield from handle(payload)
        if not finished:
            raise LLMError(f"LLM server at {self.base_url} ended the stream before finishing")

    def _record_usage(self, usage: dict[str, Any], out: dict[str, int] | None) -> None:
        self.last_usage = Usage(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                                completion_tokens=int(usage.get("completion_tokens") or 0))
        if out is not None:
            out["prompt_tokens"] = self.last_usage["prompt_tokens"]
            out["completion_tokens"] = self.last_usage["completion_tokens"]

    def _whole_json(self, text: str, usage_out: dict[str, int] | None = None
                    ) -> Generator[str, None, None]:
        try:
            data = json.loads(text)
            content = data["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(f"unexpected reply from {self.base_url}: {_excerpt(text)}") from None
        usage = data.get("usage")
        if isinstance(usage, dict):
            self._record_usage(usage, usage_out)
        if content:
            yield content
