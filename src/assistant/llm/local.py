"""In-process llama.cpp chat model (xllamacpp), no HTTP round trip.

How xllamacpp streams in-process (checked against xllamacpp 2026.10.11549):
``Server.handle_chat_completions(request_dict, callback)`` blocks the calling thread (with the
GIL released) and calls ``callback(chunk: dict)`` once per OpenAI ``chat.completion.chunk``.
Returning True from the callback stops the stream, and the server cancels the generation
(verified: the next request starts at once). Exceptions raised in the callback are swallowed
by xllamacpp and also stop the stream, so the callback must never rely on raising.

Because that call blocks, each generation runs in a worker thread that feeds a queue; the
generator returned by :meth:`LocalLlama.stream` reads the queue, so timeouts are enforced on
the consumer side even while llama.cpp is busy. Limitation: during prompt processing no
chunk arrives, so a timeout there is reported at once but llama.cpp only stops at the first
generated token (the slot stays taken until then).

Note: ``xllamacpp.Server`` always starts llama.cpp's HTTP listener too, even when used
in-process. We bind it to a Unix socket in a private 0700 temp directory with a random API
key, so nothing listens on TCP.

Same prompt, same answer: llama.cpp reuses the longest prefix a new prompt shares with what
its slot (or its RAM prompt cache) already holds, and numbers computed in a different batch
split differ in the last digits, enough to change a close token or a yes/no probability. So
an answer depended on the questions asked before it. Instead, the RAM prompt cache is off
(it could also grow to 8 GiB) and every request starts from a saved checkpoint of its own
system prompt: on first sight the slot is erased, reads the system prompt alone and is saved
to a file (llama.cpp's slot save/restore, over the private socket); each later request with
that system prompt restores it (about 5 ms), so only the rest of the prompt is computed, the
same way every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import math
import os
import queue
import secrets
import shutil
import socket
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Generator
from pathlib import Path
from typing import Any

from .base import (
    TOP_LOGPROBS,
    YES_NO,
    LLMBusy,
    LLMCancelled,
    LLMError,
    Message,
    StreamingChatModel,
    Usage,
    caller_gone,
    validate_messages,
)

logger = logging.getLogger(__name__)

# Qwen2.5 uses ChatML. <|im_end|> is an end-of-generation token in its vocabulary, so llama.cpp
# already stops there; the stop strings are a guard in case a template or tokenizer variant
# lets it through as text.
CHATML_STOPS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")
GGUF_MAGIC = b"GGUF"
CANCEL_POLL_S = 0.25  # how often a waiting caller checks `caller_gone`
CHECKPOINTS_KEPT = 8  # system prompts with a saved state (about 29 kB per prompt token each)
SLOT_ACTION_TIMEOUT_S = 60.0


def check_gguf(model_path: Path) -> None:
    """Fail early with a clear message rather than llama.cpp's generic 'check the params'."""
    if not model_path.is_file():
        raise LLMError(f"model file not found: {model_path}")
    with open(model_path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise LLMError(f"not a GGUF model file: {model_path}")


def build_params(
    model_path: Path,
    *,
    n_ctx: int,
    n_threads: int,
    hostname: str,
    port: int,
    api_key: str | None,
    alias: str | None = None,
) -> Any:
    """xllamacpp CommonParams shared by the in-process model and the HTTP server child."""
    import xllamacpp as xlc  # imported lazily: 34 MB extension, only needed when a model runs

    p = xlc.CommonParams()
    p.model.path = str(model_path)
    p.n_ctx = n_ctx
    p.n_parallel = (
        1  # one slot: 2 cores gain nothing from parallel decoding; full n_ctx per request
    )
    p.cpuparams.n_threads = n_threads
    p.cpuparams_batch.n_threads = n_threads
    p.hostnames = [hostname]
    p.port = port
    p.api_keys = [api_key] if api_key else []
    p.ui = False  # no web UI
    p.offline = True  # never try to download anything
    p.verbosity = 0
    # Pass model text through untouched (no <think> splitting into reasoning_content).
    p.reasoning_format = xlc.common_reasoning_format.COMMON_REASONING_FORMAT_NONE
    if alias:
        p.model_alias = {alias}
    return p


class LocalLlama(StreamingChatModel):
    """A GGUF chat model run in this process by llama.cpp (via xllamacpp).

    Thread-safe: one generation at a time; at most `max_queue` further callers wait, and any
    caller beyond that gets :class:`LLMBusy` immediately. The model loads on first use or on
    :meth:`load`. The generator from :meth:`stream` takes its place in the queue when it is
    first iterated (standard generator laziness); closing it early stops generation.
    """

    def __init__(
        self, model_path: Path, *, n_ctx: int = 2048, n_threads: int = 2, max_queue: int = 2
    ) -> None:
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_queue = max_queue
        stem = self.model_path.name.removesuffix(".gguf")
        self.name = f"local:{stem}"
        self.last_usage: Usage | None = None
        self.last_timings: dict[str, float] | None = None  # llama.cpp's own speed figures
        self.load_seconds: float | None = None
        self._server: Any = None
        self._sock_dir: str | None = None
        self._api_key = secrets.token_urlsafe(24)
        # system prompt digest -> checkpoint file name, oldest first; touched by the worker
        # thread only while it holds the model, so no lock of its own
        self._checkpoints: OrderedDict[str, str] = OrderedDict()
        self._load_lock = threading.Lock()
        self._cond = threading.Condition()
        self._active = False
        self._waiting = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model now (idempotent). Raises LLMError for a missing or bad file."""
        with self._load_lock:
            if self._server is not None:
                return
            check_gguf(self.model_path)
            import xllamacpp as xlc

            self._sock_dir = tempfile.mkdtemp(prefix="assistant-llm-")  # mode 0700
            # remove the socket directory even if close() is never called
            weakref.finalize(self, shutil.rmtree, self._sock_dir, True)
            params = build_params(
                self.model_path,
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                hostname=os.path.join(self._sock_dir, "llama.sock"),
                port=0,
                api_key=self._api_key,
            )
            params.cache_ram_mib = 0  # requests start from checkpoints instead (module doc)
            params.endpoint_slots = True  # slot save/restore, reachable on the socket only
            params.slot_save_path = self._sock_dir + os.sep
            t0 = time.perf_counter()
            try:
                self._server = xlc.Server(params)
            except Exception as e:  # RuntimeError("Failed to init server, ...")
                shutil.rmtree(self._sock_dir, ignore_errors=True)
                raise LLMError(f"could not load model {self.model_path}: {e}") from e
            self.load_seconds = time.perf_counter() - t0
            logger.info("loaded %s in %.1f s", self.model_path.name, self.load_seconds)

    @property
    def loaded(self) -> bool:
        return self._server is not None

    @property
    def busy(self) -> bool:
        """True while a generation holds the model (e.g. for a health endpoint)."""
        return self._active

    @property
    def waiting(self) -> int:
        """Callers currently queued behind the running generation."""
        return self._waiting

    def close(self) -> None:
        """Free the model. A generation still running keeps its own reference until it ends."""
        with self._load_lock:
            self._server = None  # Server's destructor stops llama.cpp's loop
            self._checkpoints.clear()
            if self._sock_dir:
                shutil.rmtree(self._sock_dir, ignore_errors=True)
                self._sock_dir = None

    def __enter__(self) -> LocalLlama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- admission: one active generation plus a bounded waiting line ------------------------

    def _acquire(self, deadline: float | None, gone: threading.Event | None = None) -> None:
        with self._cond:
            if self._active:
                if self._waiting >= self.max_queue:
                    raise LLMBusy(
                        f"local model busy: 1 generation running and {self._waiting} waiting "
                        f"(max_queue={self.max_queue})"
                    )
                self._waiting += 1
                try:
                    while self._active:
                        if gone is not None and gone.is_set():
                            raise LLMCancelled("the caller left while waiting for the model")
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise LLMError("timed out waiting for the local model")
                        if gone is not None:
                            remaining = min(remaining or CANCEL_POLL_S, CANCEL_POLL_S)
                        self._cond.wait(remaining)
                finally:
                    self._waiting -= 1
            self._active = True

    def _release(self) -> None:
        with self._cond:
            self._active = False
            self._cond.notify()

    # -- generation ---------------------------------------------------------------------------

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
        validate_messages(messages)  # eager, so bad input fails at the call site
        body: dict[str, Any] = {
            "messages": messages,
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stop": list(dict.fromkeys([*(stop or []), *CHATML_STOPS])),
            "stream_options": {"include_usage": True},
        }
        if grammar:
            body["grammar"] = grammar  # llama.cpp's GBNF
        if token_probs is not None:
            body.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        return self._stream(body, timeout_s, usage, token_probs)

    def yes_probability(self, messages: list[Message], *, timeout_s: float | None = None,
                        usage: dict[str, int] | None = None) -> float:
        """P("yes") / (P("yes") + P("no")) at the first generated token, from llama.cpp's
        probabilities before the grammar filters them (so both words are seen)."""
        validate_messages(messages)
        body: dict[str, Any] = {
            "messages": messages, "stream": True, "max_tokens": 1, "temperature": 0.0,
            "grammar": YES_NO, "logprobs": True, "top_logprobs": 20,
            "stream_options": {"include_usage": True},
        }
        tokens: list[dict[str, Any]] = []
        reply = "".join(self._stream(body, timeout_s, usage, tokens))
        yes = no = 0.0
        for alt in (tokens[0].get("top_logprobs") or []) if tokens else []:
            word = str(alt.get("token", "")).strip().lower()
            if word in ("yes", "no"):
                p = math.exp(float(alt.get("logprob", -math.inf)))
                yes, no = (yes + p, no) if word == "yes" else (yes, no + p)
        if yes + no == 0.0:  # no probabilities came back: the sampled word decides
            return 1.0 if reply.strip().lower().startswith("yes") else 0.0
        return yes / (yes + no)

    def _stream(self, body: dict[str, Any], timeout_s: float | None,
                usage: dict[str, int] | None = None,
                logprobs: list[dict[str, Any]] | None = None) -> Generator[str, None, None]:
        self.load()  # outside the timeout: loading cannot be interrupted; call load() at start-up
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        gone = caller_gone.get()
        self._acquire(deadline, gone)
        stop_evt = threading.Event()
        q: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        handed_off = False
        try:
            server = self._server
            if server is None:
                raise LLMError("local model was closed")
            worker = threading.Thread(
                target=self._run, args=(server, body, q, stop_evt), name="local-llm", daemon=True
            )
            worker.start()
            handed_off = True  # from here the worker releases the slot when llama.cpp returns
            first = True
            while True:
                if deadline is None and gone is None:
                    kind, val = q.get()
                else:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise LLMError(f"timed out after {timeout_s:g} s")
                    if gone is not None and first:
                        if gone.is_set():  # prompt processing goes on to its first token
                            raise LLMCancelled("the caller left before the first token")
                        remaining = min(remaining or CANCEL_POLL_S, CANCEL_POLL_S)
                    try:
                        kind, val = q.get(timeout=remaining)
                    except queue.Empty:
                        if gone is not None and first:
                            continue  # check `gone` and the deadline again
                        raise LLMError(f"timed out after {timeout_s:g} s") from None
                first = False
                if kind == "delta":
                    yield val
                elif kind == "usage":
                    self.last_usage = val
                    if usage is not None:
                        usage.update(val)
                elif kind == "timings":
                    self.last_timings = val
                elif kind == "logprobs":
                    if logprobs is not None:
                        logprobs.extend(val)
                elif kind == "error":
                    raise val
                else:  # "end"
                    return
        finally:
            stop_evt.set()  # also reached when the caller closes the generator early
            if not handed_off:
                self._release()

    def _run(
        self,
        server: Any,
        body: dict[str, Any],
        q: queue.SimpleQueue[tuple[str, Any]],
        stop_evt: threading.Event,
    ) -> None:
        finished = False

        def on_chunk(chunk: dict[str, Any]) -> bool:
            # Runs on this worker thread inside llama.cpp; True tells it to stop.
            nonlocal finished
            if stop_evt.is_set():
                return True
            try:
                if "error" in chunk or "choices" not in chunk:
                    err = chunk.get("error", chunk)
                    msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
                    q.put(("error", LLMError(f"local model error: {msg}")))
                    return True
                for choice in chunk["choices"]:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        q.put(("delta", text))
                    probs = (choice.get("logprobs") or {}).get("content")
                    if probs:
                        q.put(("logprobs", probs))
                    if choice.get("finish_reason"):
                        finished = True
                usage = chunk.get("usage")
                if usage:
                    q.put(
                        (
                            "usage",
                            Usage(
                                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                                completion_tokens=int(usage.get("completion_tokens", 0)),
                            ),
                        )
                    )
                if chunk.get("timings"):
                    q.put(("timings", chunk["timings"]))
            except Exception as e:  # xllamacpp would swallow it silently
                q.put(("error", LLMError(f"unexpected chunk from llama.cpp: {e}")))
                return True
            return stop_evt.is_set()

        try:
            self._start_from_checkpoint(server, body["messages"])
            server.handle_chat_completions(body, on_chunk)
            if not finished and not stop_evt.is_set():
                q.put(("error", LLMError("local model stream ended without a finish reason")))
        except Exception as e:
            q.put(("error", LLMError(f"local model failed: {e}")))
        finally:
            q.put(("end", None))
            self._release()

    # -- checkpoints: every request starts from its system prompt's saved state ----------------

    def _slot_action(self, action: str, filename: str = "") -> None:
        """POST /slots/0?action=... to llama.cpp's listener on the private socket."""
        assert self._sock_dir is not None
        conn = _UnixHTTPConnection(os.path.join(self._sock_dir, "llama.sock"),
                                   timeout=SLOT_ACTION_TIMEOUT_S)
        try:
            conn.request("POST", f"/slots/0?action={action}",
                         json.dumps({"filename": filename}) if filename else "{}",
                         {"Authorization": f"Bearer {self._api_key}",
                          "Content-Type": "application/json"})
            resp = conn.getresponse()
            reply = resp.read(2000)
        finally:
            conn.close()
        if resp.status != 200:
            detail = reply.decode(errors="replace")
            raise LLMError(f"slot {action} failed ({resp.status}): {detail}")

    def _start_from_checkpoint(self, server: Any, messages: list[Message]) -> None:
        """Leave the slot holding exactly the first message (a system prompt) and nothing
        else, computed from an empty slot. Runs on the worker thread, which holds the model.
        On failure the request still runs, from whatever the slot holds."""
        if not messages or messages[0].get("role") != "system":
            return
        system = messages[0]["content"]
        key = hashlib.sha256(system.encode()).hexdigest()[:32]
        try:
            name = self._checkpoints.get(key)
            if name is None:
                self._slot_action("erase")
                reply = server.handle_chat_completions(
                    {"messages": [messages[0], {"role": "user", "content": ""}],
                     "max_tokens": 1, "temperature": 0.0, "stream": False})
                if not isinstance(reply, dict) or "error" in reply:
                    raise LLMError(f"reading the system prompt failed: {reply!r:.300}")
                name = f"{key}.bin"
                self._slot_action("save", name)
                self._checkpoints[key] = name
                while len(self._checkpoints) > CHECKPOINTS_KEPT:
                    _, old = self._checkpoints.popitem(last=False)
                    assert self._sock_dir is not None
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(self._sock_dir, old))
            self._checkpoints.move_to_end(key)
            self._slot_action("restore", name)
        except (LLMError, OSError, http.client.HTTPException) as e:
            self._checkpoints.pop(key, None)
            logger.warning("prompt checkpoint unavailable, answer may depend on earlier "
                           "prompts: %s", e)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket (llama.cpp's listener in the private directory)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock
