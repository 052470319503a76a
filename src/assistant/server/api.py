"""HTTP API over one `Assistant`: /api/chat (JSON or Server-Sent Events), /api/health,
/api/collections and an OpenAI-compatible /v1/chat/completions.

A question may name its collection (`collection` in the body; under /v1 also a `model` that
names one). A name that is not valid is 422, a collection that does not exist 404, and a
cross-origin request from a site the `collection_origins` setting does not name for it 403:
never an answer from another collection.

The assistant's `stream()` is a synchronous generator that does CPU work (retrieval, model
calls), so every step of it runs in the thread pool: the event loop stays free and many
extractive answers are served at once. `stream()` raises `InputError` / `BusyError` before its
first event, so the first event is pulled before a 200 (or an event stream) is committed to.

Every answer, streamed or not, is pulled one event at a time while the client's connection is
watched: when the client goes away the generator is closed (a local model stops generating)
as soon as the step in progress ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr
from starlette.concurrency import run_in_threadpool

from ..catalog import DEFAULT, NAME_RE, CollectionError, valid_name
from ..core import BusyError, Delta, Event, Final, InputError, invalid_code_point
from ..llm.base import caller_gone
from ..sources import DocumentText
from ..store import StoreError
from ..types import Answer, Message
from .origins import CollectionOrigins, OriginPolicy

log = logging.getLogger(__name__)

BUSY_MESSAGE = "busy, try again"
BUSY_RETRY_AFTER_S = 5
DISCONNECT_POLL_S = 0.25  # how often a pending answer checks that its client is still there
STORE_RETRY_AFTER_S = 10


class AssistantLike(Protocol):
    """What the front ends need from `assistant.core.Assistant` (tests pass small fakes)."""

    @property
    def generators(self) -> list[str]: ...

    def health(self) -> dict[str, Any]: ...

    def stream(self, question: str, history: Sequence[Message] = (),
               generator: str | None = None, collection: str | None = None
               ) -> Iterator[Event]: ...

    def document(self, document: str, collection: str | None = None
                 ) -> DocumentText | None: ...

    def collections(self, refresh: bool = False) -> list[str]: ...

    def has_collection(self, name: str) -> bool: ...

    def collection_info(self) -> list[dict[str, Any]]: ...


class ApiError(Exception):
    """An error answered as JSON: {"error": message} (OpenAI's shape under /v1)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.kind = kind


def error_response(path: str, status: int, message: str,
                   headers: dict[str, str] | None = None, kind: str = "") -> JSONResponse:
    """The one error body: {"error": "..."}; under /v1 OpenAI's {"error": {"message", ...}}."""
    if path.startswith("/v1/"):
        kind = kind or {401: "authentication_error", 429: "rate_limit_error",
                        503: "server_error"}.get(status, "invalid_request_error")
        body: dict[str, Any] = {"error": {"message": message, "type": kind, "code": status}}
    else:
        body = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)


# -- request bodies ----------------------------------------------------------------------------
def _valid_text(value: str) -> str:
    bad = invalid_code_point(value)
    if bad is not None:
        raise ValueError(f"contains an invalid character (U+{ord(bad):04X}, a lone "
                         "surrogate): send text as valid Unicode")
    return value


Text = Annotated[StrictStr, AfterValidator(_valid_text)]


class ChatMessageIn(BaseModel):
    role: Literal["user", "assistant"]
    content: Text


class ChatRequest(BaseModel):
    """POST /api/chat: the conversation so far; the last message is the user's question."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: StrictBool = False
    generator: StrictStr | None = Field(
        None, description="A name from GET /api/health `generators`; default: the first."
    )
    collection: StrictStr | None = Field(
        None, description="A name from GET /api/collections; default: `default`.")


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: StrictStr
    text: Text | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None


class CompletionRequest(BaseModel):
    """POST /v1/chat/completions; sampling options are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: StrictStr = ""
    messages: list[OpenAIMessage] = Field(min_length=1)
    stream: StrictBool = False
    collection: StrictStr | None = None


# -- conversation helpers ----------------------------------------------------------------------
def split_conversation(messages: Sequence[tuple[str, str]]) -> tuple[str, list[Message]]:
    """(role, text) turns -> (the last user message, the earlier user/assistant turns)."""
    turns = [(role, text) for role, text in messages if role in ("user", "assistant")]
    if not turns:
        raise ApiError(422, "messages must hold at least one user message.")
    role, question = turns[-1]
    if role != "user":
        raise ApiError(422, "The last message must come from the user (role \"user\").")
    history = [Message("user" if r == "user" else "assistant", t) for r, t in turns[:-1]]
    return question, history


def _openai_text(m: OpenAIMessage) -> str:
    if m.content is None:
        return ""
    if isinstance(m.content, str):
        return m.content
    return "".join(p.text or "" for p in m.content if p.type == "text")


_END = object()


def _next(it: Iterator[Event]) -> Any:
    return next(it, _END)


def _is_busy(exc: BaseException) -> bool:
    if isinstance(exc, BusyError):
        return True
    try:
        from ..llm.base import LLMBusy
    except ImportError:  # pragma: no cover - the LLM layer is optional
        return False
    return isinstance(exc, LLMBusy)


# -- the document store being down --------------------------------------------------------
def store_unavailable(exc: StoreError) -> ApiError:
    """503: the index (Chroma) does not answer; the message names its URL and the cause."""
    log.warning("document store unavailable: %s", exc)
    return ApiError(503, f"The document store is unavailable: {exc}",
                    {"Retry-After": str(STORE_RETRY_AFTER_S)}, kind="server_error")


def _map_error(exc: Exception) -> ApiError:
    if isinstance(exc, InputError):
        return ApiError(422, str(exc))
    if isinstance(exc, CollectionError):
        return ApiError(exc.status, str(exc))
    if isinstance(exc, StoreError):
        return store_unavailable(exc)
    if _is_busy(exc):
        return ApiError(503, BUSY_MESSAGE, {"Retry-After": str(BUSY_RETRY_AFTER_S)},
                        kind="server_error")
    log.exception("answering failed")
    return ApiError(500, f"The assistant failed to answer: {type(exc).__name__}.",
                    kind="server_error")


class ClientGone(Exception):
    """The client disconnected before its answer was complete."""


def _close(events: Iterator[Event]) -> None:
    close = getattr(events, "close", None)
    if close is not None:
        # "generator already executing" (ValueError) cannot happen here: a step is never
        # in flight when this runs (see _Session.close_soon).
        with contextlib.suppress(ValueError):
            close()


class _Session:
    """One answer in progress: its generator, pulled one event at a time in the thread pool
    while the client is watched; closed when the client leaves or the answer ends early."""

    def __init__(self, events: Iterator[Event], request: Request | None) -> None:
        self.events = events
        self.request = request
        self.first: Any = None
        self.gone = threading.Event()  # seen by a model waiting for its turn (caller_gone)
        self._step: asyncio.Future[Any] | None = None
        self._closed = False

    async def pull(self) -> Any:
        """The next event (or _END); ClientGone if the client left while it was computed."""
        token = caller_gone.set(self.gone)  # copied into the step's thread with the context
        try:
            step = self._step = asyncio.ensure_future(run_in_threadpool(_next, self.events))
        finally:
            caller_gone.reset(token)
        while True:
            done, _ = await asyncio.wait({step}, timeout=DISCONNECT_POLL_S)
            if done:
                self._step = None
                return step.result()
            if self.request is not None and await self.request.is_disconnected():
                log.info("client left before its answer was complete; stopping it")
                self.gone.set()
                self.close_soon()
                raise ClientGone

    def close_soon(self) -> None:
        """Close the generator now, or as soon as the step in progress returns (a running
        generator cannot be closed; a local model stops at its next token)."""
        if self._closed:
            return
        self._closed = True
        step = self._step
        loop = asyncio.get_running_loop()
        if step is None or step.done():
            loop.run_in_executor(None, _close, self.events)
        else:
            step.add_done_callback(lambda _: loop.run_in_executor(None, _close, self.events))

    async def rest(self) -> AsyncIterator[Event]:
        """The first event, then the others; the generator is closed however this ends."""
        finished = False
        try:
            yield self.first
            while True:
                event = await self.pull()
                if event is _END:
                    finished = True
                    return
                yield event
        finally:
            if not finished:
                self.close_soon()


async def start(assistant: AssistantLike, question: str, history: list[Message],
                generator: str | None, request: Request | None = None,
                collection: str | None = None) -> _Session:
    """Run the assistant up to its first event; errors before it become an ApiError."""
    session = _Session(assistant.stream(question, history, generator, collection=collection),
                       request)
    try:
        first = await session.pull()
    except ClientGone:
        raise
    except Exception as exc:
        raise _map_error(exc) from exc
    if first is _END:
        raise _map_error(RuntimeError("no answer"))
    session.first = first
    return session


async def answer_all(assistant: AssistantLike, question: str, history: list[Message],
                     generator: str | None, request: Request | None = None,
                     collection: str | None = None) -> Answer:
    """The whole answer, pulled event by event so that a client leaving stops it."""
    session = await start(assistant, question, history, generator, request, collection)
    final: Answer | None = None
    try:
        async for event in session.rest():
            if isinstance(event, Final):
                final = event.answer
    except ClientGone:
        raise
    except Exception as exc:
        raise _map_error(exc) from exc
    if final is None:
        raise _map_error(RuntimeError("the assistant ended without a final answer"))
    return final


def _gone(path: str) -> Response:
    """The answer to a client that already left (nobody reads it)."""
    return error_response(path, 400, "The client left before the answer was complete.")


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# -- collections -------------------------------------------------------------------------------
async def use_collection(assistant: AssistantLike, origins: CollectionOrigins,
                         request: Request, name: str | None) -> str:
    """The collection a request names (None: `default`), checked: ApiError 422 for a name that
    is not valid, 403 for an origin that may not use it, 404 for one that does not exist."""
    name = DEFAULT if name is None else name
    try:
        valid_name(name)
    except CollectionError as exc:
        raise ApiError(exc.status, str(exc)) from exc
    refusal = origins.refusal(name, request.scope, request.headers)
    if refusal is not None:
        raise ApiError(403, refusal)
    if name != DEFAULT and not await run_in_threadpool(assistant.has_collection, name):
        known = await run_in_threadpool(assistant.collections)
        raise ApiError(404, f"Unknown collection {name!r}; the collections are: "
                       f"{', '.join(origins.visible(known, request.scope, request.headers))}.")
    return name


# -- the router --------------------------------------------------------------------------------
def make_api_router(assistant: AssistantLike, origins: CollectionOrigins | None = None
                    ) -> APIRouter:
    router = APIRouter()
    origins = origins or CollectionOrigins({}, OriginPolicy([]))

    def pick_generator(name: str | None, *, strict: bool) -> str | None:
        if not name:
            return None
        available = assistant.generators
        if name in available:
            return name
        if strict:
            raise ApiError(422, f"Unknown generator {name!r}; available: {', '.join(available)}.")
        return None  # OpenAI clients send any model name: use the default generator

    @router.get("/api/health", response_model=None)
    async def health(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            info = await run_in_threadpool(assistant.health)
        except StoreError as exc:  # checked on every call: never a stale "ok"
            err = store_unavailable(exc)
            return JSONResponse({"status": "unavailable", "error": err.message,
                                 "store": exc.location, "generators": assistant.generators},
                                status_code=503, headers=err.headers)
        if "collections" in info:
            info["collections"] = _visible_info(info["collections"], request)
        return {"status": "ok", **info, "generators": assistant.generators}

    def _visible_info(info: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
        names = set(origins.visible([c["name"] for c in info], request.scope, request.headers))
        return [c for c in info if c["name"] in names]

    @router.get("/api/collections")
    async def collections(request: Request) -> dict[str, Any]:
        """The collections (those the request's origin may use), with document and chunk
        counts; `default` first."""
        info = await run_in_threadpool(assistant.collection_info)
        return {"collections": _visible_info(info, request), "default": DEFAULT}

    @router.post("/api/chat", response_model=None)
    async def chat(body: ChatRequest, request: Request) -> Response:
        """The answer to the last user message, in the `assistant ask --json` shape.

        With "stream": true, Server-Sent Events: `delta` events ({"text": ...}) and then one
        `final` event (the whole answer object, whose "answer" is authoritative), or one
        `error` event ({"error": ...}) if answering fails midway.
        """
        question, history = split_conversation([(m.role, m.content) for m in body.messages])
        generator = pick_generator(body.generator, strict=True)
        collection = await use_collection(assistant, origins, request, body.collection)
        try:
            if not body.stream:
                answer = await answer_all(assistant, question, history, generator, request,
                                          collection)
                return JSONResponse(answer.to_json())
            session = await start(assistant, question, history, generator, request,
                                  collection)
        except ClientGone:
            return _gone(request.url.path)

        async def events() -> AsyncIterator[str]:
            try:
                async for event in session.rest():
                    if isinstance(event, Delta):
                        yield _sse("delta", {"text": event.text})
                    elif isinstance(event, Final):
                        yield _sse("final", event.answer.to_json())
            except ClientGone:
                return
            except Exception as exc:
                yield _sse("error", {"error": _map_error(exc).message})

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    @router.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        """The generators, then the collections (a `model` may name either)."""
        generators = assistant.generators
        try:
            names = await run_in_threadpool(assistant.collections)
        except StoreError as exc:  # the generators can still be listed
            log.warning("cannot list the collections for /v1/models: %s", exc)
            names = []
        return {"object": "list", "data": [
            {"id": g, "object": "model", "created": 0, "owned_by": "assistant"}
            for g in generators
        ] + [
            {"id": c, "object": "model", "created": 0, "owned_by": "collection"}
            for c in origins.visible(names, request.scope, request.headers)
            if c not in generators
        ]}

    async def completion_collection(body: CompletionRequest, request: Request) -> str:
        """`collection`, or a `model` naming a collection (any other model name is ignored,
        as OpenAI clients send one whatever the server)."""
        named = body.model if (body.model and body.model not in assistant.generators
                               and NAME_RE.fullmatch(body.model)) else ""
        if named and named not in await run_in_threadpool(assistant.collections):
            named = ""
        if body.collection is not None and named and named != body.collection:
            raise ApiError(422, f"model names the collection {named!r} but collection is "
                           f"{body.collection!r}: name one.")
        chosen = body.collection if body.collection is not None else (named or None)
        return await use_collection(assistant, origins, request, chosen)

    @router.post("/v1/chat/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Response:
        """OpenAI-compatible; the citations travel in extra fields "citations" and "refused"."""
        question, history = split_conversation([(m.role, _openai_text(m)) for m in body.messages])
        generator = pick_generator(body.model, strict=False)
        collection = await completion_collection(body, request)
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        try:
            if not body.stream:
                answer = await answer_all(assistant, question, history, generator, request,
                                          collection)
            else:
                session = await start(assistant, question, history, generator, request,
                                      collection)
        except ClientGone:
            return _gone(request.url.path)
        if not body.stream:
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": created,
                "model": answer.mode,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": answer.answer}}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "citations": [c.public() for c in answer.citations],
                "refused": answer.refused,
                "collection": collection,
            })
        model = generator or (assistant.generators or ["assistant"])[0]

        def chunk(delta: dict[str, Any], finish: str | None = None,
                  **extra: Any) -> str:
            data = {"id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish, "logprobs": None}],
                    **extra}
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        async def events() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            try:
                async for event in session.rest():
                    if isinstance(event, Delta):
                        yield chunk({"content": event.text})
                    elif isinstance(event, Final):
                        a = event.answer
                        yield chunk({}, "stop", answer=a.answer, refused=a.refused,
                                    citations=[c.public() for c in a.citations],
                                    collection=collection)
            except ClientGone:
                return
            except Exception as exc:
                err = _map_error(exc)
                payload = {"error": {"message": err.message, "type": err.kind}}
                yield f"data: {json.dumps(payload)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    return router
