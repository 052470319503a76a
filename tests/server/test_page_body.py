"""Request bodies to the Gradio page's routes are capped like the API's; the page still works."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount
from starlette.types import Message, Receive, Scope, Send

from assistant.server.app import MAX_BODY_BYTES, Guard, RateLimiter, make_app
from assistant.settings import Settings

from .conftest import LOCAL, in_fresh_loop, serving
from .fakes import ANSWER, FakeAssistant

CHUNK = 64 * 1024
OVER_CAP = MAX_BODY_BYTES // CHUNK + 2  # chunks: just past the cap
JSON = {"content-type": "application/json"}
TOO_LARGE = {"error": f"The request body is too large (over {MAX_BODY_BYTES} bytes)."}
JOIN = "/gradio_api/queue/join"
GRADIO_POSTS = [JOIN, "/gradio_api/run/chat", "/gradio_api/call/chat", "/"]


@dataclass
class Seen:
    """One request as the mounted Gradio app saw it."""

    path: str
    body_bytes: int = 0
    disconnected: bool = False


def spied_app(tmp_path: Path) -> tuple[FakeAssistant, FastAPI, list[Seen]]:
    """The whole app, with a spy between the guard and the mounted Gradio app."""
    settings = Settings(data_dir=tmp_path)
    fake = FakeAssistant(settings)
    app = make_app(fake, settings)
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "")
    gradio, seen = mount.app, []

    async def spy(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await gradio(scope, receive, send)
            return
        record = Seen(scope["path"])
        seen.append(record)

        async def counting() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                record.body_bytes += len(message.get("body", b""))
            else:
                record.disconnected = True
            return message

        await gradio(scope, counting, send)

    mount.app = spy
    return fake, app, seen


async def spaces(n: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b" " * CHUNK


def join_body(fn_index: int = 0) -> bytes:
    return json.dumps({"data": ["What is it?", []], "fn_index": fn_index, "session_hash": "s1",
                       "trigger_id": None, "event_data": None}).encode()


def test_declared_oversize_body_never_reaches_gradio(tmp_path: Path) -> None:
    fake, app, seen = spied_app(tmp_path)
    c = TestClient(app, base_url=LOCAL)
    for path in GRADIO_POSTS:
        for method in ("POST", "PUT", "PATCH"):
            r = c.request(method, path, content=b"x" * (MAX_BODY_BYTES + 1), headers=JSON)
            assert r.status_code == 413, (method, path, r.text)
            assert r.json() == TOO_LARGE
            assert r.headers["x-content-type-options"] == "nosniff"
    assert seen == [] and fake.calls == []


def test_chunked_oversize_body_is_cut_off_before_gradio_reads_it(tmp_path: Path) -> None:
    """No Content-Length: Gradio gets at most the cap, then a disconnect, and we answer 413."""
    fake, app, seen = spied_app(tmp_path)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as c:
            return [await c.post(path, content=spaces(OVER_CAP), headers=JSON)
                    for path in (JOIN, "/gradio_api/run/chat")]

    responses = in_fresh_loop(run())
    for r in responses:
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in r.request.headers
        assert r.status_code == 413, (r.request.url, r.text)
        assert r.json() == TOO_LARGE
    assert [s.path for s in seen] == [JOIN, "/gradio_api/run/chat"]
    for s in seen:
        assert 0 < s.body_bytes <= MAX_BODY_BYTES and s.disconnected, s
    assert fake.calls == []


def test_chunked_oversize_body_to_gradio_on_a_real_server(tmp_path: Path) -> None:
    """Over uvicorn: the client reads the 413, and the server goes on serving the page."""
    fake, app, _ = spied_app(tmp_path)

    def chunks(n: int) -> Iterator[bytes]:
        for _ in range(n):
            yield b" " * CHUNK

    with serving(app) as url:
        r = httpx.post(url + JOIN, content=chunks(OVER_CAP * 4), headers=JSON, timeout=60)
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert r.status_code == 413 and r.json() == TOO_LARGE
        assert httpx.get(url + "/", timeout=60).status_code == 200
    assert fake.calls == []


def test_page_and_its_queue_still_work(tmp_path: Path) -> None:
    """A page load, normal queue joins (one of them chunked) and the queue's SSE stream."""
    fake, app, seen = spied_app(tmp_path)

    def answered(c: TestClient) -> list[dict[str, Any]]:
        with c.stream("GET", "/gradio_api/queue/data", params={"session_hash": "s1"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(line[len("data: "):]) for line in r.iter_lines()
                      if line.startswith("data: ")]
        return [e for e in events if e.get("msg") == "process_completed"]

    # `with`: Gradio's queue starts with the app's lifespan
    with TestClient(app, base_url=LOCAL) as c:
        r = c.get("/")
        assert r.status_code == 200 and "<html" in r.text.lower()
        config = c.get("/config").json()
        chat = next(d["id"] for d in config["dependencies"] if d["api_name"] == "chat")
        body = join_body(chat)
        r = c.post(JOIN, content=body, headers=JSON)
        assert r.status_code == 200 and r.json()["event_id"]
        done = answered(c)
        assert len(done) == 1 and done[0]["success"] is True, done
        assert ANSWER in json.dumps(done[0]["output"])

        r = c.post(JOIN, content=iter([body[:20], body[20:]]), headers=JSON)
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert r.status_code == 200 and r.json()["event_id"]
        assert len(answered(c)) == 1
    assert [q for q, _, _ in fake.calls] == ["What is it?"] * 2
    joins = [s for s in seen if s.path == JOIN]
    assert [s.body_bytes for s in joins] == [len(body)] * 2


def test_streams_and_websockets_pass_through_untouched() -> None:
    """GET (the queue's SSE) and websockets reach the app with the server's own receive/send
    (nothing counts or rewrites them); a POST's receive is the counting one."""
    got: list[tuple[str, Any, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        got.append((scope["type"] + " " + scope.get("method", ""), receive, send))
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    guard = Guard(app, Settings(data_dir=Path("/nonexistent")), RateLimiter(0))
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> None:
        for kind, method in [("http", "GET"), ("websocket", None), ("http", "POST")]:
            scope: dict[str, Any] = {"type": kind, "path": "/gradio_api/queue/data",
                                     "headers": [(b"host", b"t")], "client": ("1.2.3.4", 1)}
            if method:
                scope["method"] = method
            await guard(scope, receive, send)

    in_fresh_loop(run())
    (get, _, _), (ws, ws_receive, ws_send), (post, post_receive, _) = got
    assert (get, ws, post) == ("http GET", "websocket ", "http POST")
    assert got[0][1] is receive and ws_receive is receive and ws_send is send
    assert post_receive is not receive
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"
