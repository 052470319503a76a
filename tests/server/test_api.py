"""The HTTP API and its guard, over a fake assistant (no model, no index, no Gradio)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from assistant.server.app import (
    MAX_BODY_BYTES,
    OriginPolicy,
    RateLimiter,
    make_app,
    normalize_origin,
)
from assistant.settings import Settings
from assistant.types import Message

from .conftest import LOCAL, in_fresh_loop, serving
from .fakes import ANSWER, CITATION, FakeAssistant

Q = {"role": "user", "content": "What is it?"}


def client(fake: FakeAssistant | None = None, **settings: Any) -> TestClient:
    s = Settings(data_dir=Path("/nonexistent"), **settings)
    fake = fake or FakeAssistant(s)
    fake.settings = s
    return TestClient(make_app(fake, s, ui=False), base_url=LOCAL)


def sse_events(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines.get("event", "message"), json.loads(lines["data"])))
    return events


# -- /api/chat ---------------------------------------------------------------------------------
def test_chat_answers_last_user_message_with_history() -> None:
    fake = FakeAssistant()
    r = client(fake).post("/api/chat", json={"messages": [
        {"role": "user", "content": "What is YAKSHA?"},
        {"role": "assistant", "content": "A project [1]."},
        {"role": "user", "content": "Which countries does it cover?"},
    ]})
    assert r.status_code == 200
    body = r.json()
    assert body["answer"] == ANSWER and body["refused"] is False
    assert body["citations"][0] == {
        "id": 1, "document": "doc.md", "title": "A document", "section": "Part › Section",
        "text": "Quoted <b>text</b> [sic].", "start": CITATION.start, "end": CITATION.end,
        "page": None, "url": CITATION.url}
    assert set(body) >= {"answer", "refused", "citations", "mode", "timings_ms"}
    question, history, generator = fake.calls[0]
    assert question == "Which countries does it cover?"
    assert history == [Message("user", "What is YAKSHA?"),
                       Message("assistant", "A project [1].")]
    assert generator is None


def test_chat_streams_deltas_then_final() -> None:
    r = client().post("/api/chat", json={"messages": [Q], "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert [e for e, _ in events] == ["delta", "delta", "final"]
    assert "".join(d["text"] for e, d in events if e == "delta") == ANSWER
    final = events[-1][1]
    assert final["answer"] == ANSWER and final["citations"][0]["id"] == 1
    assert final["refused"] is False


def test_chat_stream_failure_midway_is_an_error_event() -> None:
    r = client(FakeAssistant(fail_midway=True)).post(
        "/api/chat", json={"messages": [Q], "stream": True})
    assert r.status_code == 200
    events = sse_events(r.text)
    assert events[-1][0] == "error" and "failed" in events[-1][1]["error"]


def test_chat_generator_choice() -> None:
    fake = FakeAssistant(generators=["extractive", "local"])
    c = client(fake)
    assert c.post("/api/chat", json={"messages": [Q], "generator": "local"}).json()["mode"] \
        == "local"
    r = c.post("/api/chat", json={"messages": [Q], "generator": "gpt-9"})
    assert r.status_code == 422 and "extractive, local" in r.json()["error"]


@pytest.mark.parametrize(("body", "status", "says"), [
    ({}, 422, "messages: Field required"),
    ({"messages": "hello"}, 422, "messages: Input should be a valid list"),
    ({"messages": []}, 422, "at least 1 item"),
    ({"messages": [{"role": "user"}]}, 422, "messages.0.content: Field required"),
    ({"messages": [{"role": "user", "content": 7}]}, 422, "valid string"),
    ({"messages": [{"role": "robot", "content": "x"}]}, 422, "role must be one of"),
    ({"messages": [Q], "stream": "yes"}, 422, "stream: Input should be a valid boolean"),
    ({"messages": [{"role": "user", "content": "   "}]}, 422, "The question is empty."),
    ({"messages": [{"role": "user", "content": "x" * 2001}]}, 422, "too long"),
    ({"messages": [Q, {"role": "assistant", "content": "a"}]}, 422, "last message must come"),
    ([Q], 422, "Send a JSON object"),
])
def test_chat_rejects_bad_requests_with_a_clear_error(body: Any, status: int, says: str) -> None:
    c = client()
    for stream in (False, True):
        payload = {**body, "stream": body.get("stream", stream)} if isinstance(body, dict) \
            else body
        r = c.post("/api/chat", json=payload)
        assert r.status_code == status, r.text
        assert says in r.json()["error"]


def test_chat_rejects_too_many_turns_and_non_json() -> None:
    c = client(max_turns=2)
    turns = [{"role": r, "content": "x"} for r in ["user", "assistant"] * 2] + [Q]
    r = c.post("/api/chat", json={"messages": turns})
    assert r.status_code == 422 and "conversation is too long" in r.json()["error"]
    r = c.post("/api/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json() == {"error": "The request body is not valid JSON."}
    r = c.post("/api/chat", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 422 and "Send a JSON object" in r.json()["error"]
    r = c.post("/api/chat", content=b"x" * 1_000_001, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert c.get("/api/nothing-here").json() == {"error": "No such endpoint: /api/nothing-here"}


CHUNK = 64 * 1024
OVER_CAP = MAX_BODY_BYTES // CHUNK + 2  # chunks: just past the cap


def small_body() -> bytes:
    return json.dumps({"messages": [Q]}).encode()


def test_chunked_body_over_the_cap_is_413_json() -> None:
    """No Content-Length (Transfer-Encoding: chunked): the guard counts the bytes."""
    fake = FakeAssistant()
    s = Settings(data_dir=Path("/nonexistent"))
    fake.settings = s
    app = make_app(fake, s, ui=False)

    async def chunks(n: int) -> AsyncIterator[bytes]:
        for _ in range(n):
            yield b" " * CHUNK

    async def halves() -> AsyncIterator[bytes]:
        body = small_body()
        yield body[:10]
        yield body[10:]

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as c:
            return [await c.post(path, content=content, headers={
                        "content-type": "application/json"})
                    for path, content in [("/api/chat", chunks(OVER_CAP)),
                                          ("/v1/chat/completions", chunks(OVER_CAP * 4)),
                                          ("/api/chat", halves())]]

    big, big_v1, small = in_fresh_loop(run())
    for r in (big, big_v1, small):
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in r.request.headers
    assert big.status_code == 413, big.text
    assert big.json() == {"error": f"The request body is too large (over {MAX_BODY_BYTES} "
                                   "bytes)."}
    assert big.headers["x-content-type-options"] == "nosniff"
    assert big_v1.status_code == 413
    assert big_v1.json()["error"]["code"] == 413
    assert big_v1.json()["error"]["type"] == "invalid_request_error"
    assert small.status_code == 200 and small.json()["answer"] == ANSWER
    assert len(fake.calls) == 1  # the oversize requests never reached the assistant


def test_chunked_body_cap_on_a_real_server() -> None:
    """The same over uvicorn on loopback: a 413 the client reads, the server still serving."""
    fake = FakeAssistant()
    s = Settings(data_dir=Path("/nonexistent"), rate_limit_per_minute=0)
    fake.settings = s

    def chunks(n: int) -> Iterator[bytes]:
        for _ in range(n):
            yield b" " * CHUNK

    with serving(make_app(fake, s, ui=False)) as url:
        for n in (OVER_CAP, 100):
            r = httpx.post(url + "/api/chat", content=chunks(n), timeout=60,
                           headers={"content-type": "application/json"})
            assert r.request.headers["transfer-encoding"] == "chunked"
            assert r.status_code == 413, r.text
            assert "too large" in r.json()["error"]
        r = httpx.post(url + "/api/chat", content=iter([small_body()[:5], small_body()[5:]]),
                       headers={"content-type": "application/json"}, timeout=60)
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert r.status_code == 200 and r.json()["answer"] == ANSWER
    assert len(fake.calls) == 1


def test_busy_is_503_with_retry_after() -> None:
    c = client(FakeAssistant(busy=True))
    for path, body in [("/api/chat", {"messages": [Q]}),
                       ("/api/chat", {"messages": [Q], "stream": True}),
                       ("/v1/chat/completions", {"model": "x", "messages": [Q], "stream": True})]:
        r = c.post(path, json=body)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        err = r.json()["error"]
        assert (err if isinstance(err, str) else err["message"]) == "busy, try again"


def test_health() -> None:
    body = client().get("/api/health").json()
    assert body["status"] == "ok" and body["documents"] == 1 and body["chunks"] == 3
    assert body["generator"] == "extractive" and body["generators"] == ["extractive"]


def test_extractive_answers_run_concurrently_off_the_event_loop() -> None:
    fake = FakeAssistant(delay=0.4)
    s = Settings(data_dir=Path("/nonexistent"), rate_limit_per_minute=0)
    app = make_app(fake, s, ui=False)

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as c:
            rs = await asyncio.gather(*[c.post("/api/chat", json={"messages": [Q]})
                                        for _ in range(8)])
        return [r.status_code for r in rs]

    t0 = time.perf_counter()
    statuses = in_fresh_loop(run())
    elapsed = time.perf_counter() - t0
    assert statuses == [200] * 8
    assert elapsed < 8 * 0.4 / 2, f"requests were serialized ({elapsed:.2f} s)"
    assert len(fake.threads) > 1


# -- /v1/chat/completions ----------------------------------------------------------------------
def test_openai_completion_shape() -> None:
    fake = FakeAssistant()
    r = client(fake).post("/v1/chat/completions", json={
        "model": "whatever", "temperature": 0.2,
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "What is it?"}]}]})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": ANSWER}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["citations"][0]["document"] == "doc.md" and body["refused"] is False
    assert fake.calls[0][0] == "What is it?" and fake.calls[0][1] == []


def test_openai_stream_ends_with_citations_and_done() -> None:
    r = client().post("/v1/chat/completions", json={"model": "m", "stream": True,
                                                    "messages": [Q]})
    lines = [ln[len("data: "):] for ln in r.text.split("\n\n") if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == ANSWER
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["citations"][0]["id"] == 1


def test_openai_errors_use_openai_shape() -> None:
    c = client()
    r = c.post("/v1/chat/completions", json={"model": "m", "messages": [
        {"role": "assistant", "content": "hi"}]})
    assert r.status_code == 422
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "must hold at least one user message" in r.json()["error"]["message"] or \
        "last message" in r.json()["error"]["message"]
    r = c.post("/v1/chat/completions", json={"messages": "nope"})
    assert r.status_code == 422 and "messages" in r.json()["error"]["message"]
    assert c.get("/v1/models").json()["data"][0]["id"] == "extractive"


# -- the guard ---------------------------------------------------------------------------------
def test_api_key_required_when_set() -> None:
    c = client(api_key="s3cret")
    assert c.post("/api/chat", json={"messages": [Q]}).status_code == 401
    r = c.post("/api/chat", json={"messages": [Q]}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and "API key" in r.json()["error"]
    assert r.headers["www-authenticate"] == "Bearer"
    ok = c.post("/api/chat", json={"messages": [Q]}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    r = c.post("/v1/chat/completions", json={"model": "m", "messages": [Q]})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert c.get("/api/health").status_code == 200  # monitoring needs no key


def test_rate_limit_per_client() -> None:
    c = client(rate_limit_per_minute=2)
    codes = [c.post("/api/chat", json={"messages": [Q]}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = c.post("/v1/chat/completions", json={"model": "m", "messages": [Q]})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert c.get("/api/health").status_code == 200


def test_rate_limiter_window_and_switch() -> None:
    lim = RateLimiter(2, window_s=1)
    assert lim.wait("a") == 0.0
    assert [lim.hit("a"), lim.hit("a")] == [0.0, 0.0]
    assert lim.wait("a") > 0 and lim.wait("b") == 0.0  # `wait` records nothing
    assert lim.hit("a") > 0 and lim.hit("b") == 0.0
    assert lim.wait("b") == 0.0
    time.sleep(1.1)  # the window has moved past both hits
    assert lim.wait("a") == 0.0
    assert lim.hit("a") == 0.0
    off = RateLimiter(0)
    assert all(off.hit("a") == 0.0 for _ in range(1000))


def test_cors_allows_listed_origins_only() -> None:
    c = client(allowed_origins=["http://site.example:8080/"])
    pre = {"Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "content-type"}
    r = c.options("/api/chat", headers={"Origin": "http://site.example:8080", **pre})
    assert r.status_code == 200  # Starlette's CORSMiddleware answers the preflight
    assert r.headers["access-control-allow-origin"] == "http://site.example:8080"
    assert "content-type" in r.headers["access-control-allow-headers"]
    r = c.post("/api/chat", json={"messages": [Q]}, headers={"Origin": "http://site.example:8080"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://site.example:8080"
    assert "Origin" in r.headers["vary"]
    for origin in ("http://evil.example", "http://site.example:9999", "null"):
        r = c.options("/api/chat", headers={"Origin": origin, **pre})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
        r = c.post("/api/chat", json={"messages": [Q]}, headers={"Origin": origin})
        assert r.status_code == 403 and "not allowed" in r.json()["error"]
    # The app's own origin needs no listing, and gets no CORS headers.
    r = c.post("/api/chat", json={"messages": [Q]}, headers={"Origin": LOCAL})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_security_headers() -> None:
    r = client().get("/api/health")
    assert r.headers["content-security-policy"] == "frame-ancestors 'self'"
    assert r.headers["x-content-type-options"] == "nosniff"
    r = client(allowed_origins=["http://a.example", "https://b.example"]).get("/widget.js")
    assert r.headers["content-security-policy"] == \
        "frame-ancestors 'self' http://a.example https://b.example"
    assert r.headers["content-type"].startswith("text/javascript")
    assert "attachShadow" in r.text
    assert client(allowed_origins=["*"]).get("/widget.js").headers[
        "content-security-policy"] == "frame-ancestors *"


def test_origin_normalization() -> None:
    assert normalize_origin("HTTP://Example.COM") == "http://example.com:80"
    assert normalize_origin("https://x.org:443/") == "https://x.org:443"
    policy = OriginPolicy(["*"])
    assert policy.any


def test_widget_source_has_no_html_sinks() -> None:
    """The widget builds DOM nodes: no innerHTML/outerHTML/insertAdjacentHTML/document.write."""
    text = client().get("/widget.js").text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in text, sink
