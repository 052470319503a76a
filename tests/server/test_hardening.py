"""The server under hostile or careless clients, mostly over a real uvicorn on loopback:
spoofed X-Forwarded-For, foreign Host headers, huge or slow requests, invalid Unicode, file
uploads, Gradio's HTTP API past the rate limit, clients that leave before their answer, and
the one error shape."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from assistant.core import InputError, validate
from assistant.server.app import WRONG_KEYS_PER_MINUTE, make_app
from assistant.settings import Settings
from assistant.types import Message

from .conftest import LOCAL, LiveServer, in_fresh_loop, serving
from .fakes import ANSWER, FakeAssistant, SlowAssistant

Q = {"role": "user", "content": "What is it?"}
CHAT = {"messages": [Q]}


def fake_app(tmp_path: Path | None = None, *, ui: bool = False,
             fake: FakeAssistant | None = None, **settings: Any) -> tuple[Any, Settings, Any]:
    s = Settings(data_dir=tmp_path or Path("/nonexistent"), **settings)
    fake = fake or FakeAssistant(s)
    fake.settings = s
    return fake, s, make_app(fake, s, ui=ui)


def raw(url: str, *parts: bytes, pause: float = 0.0, timeout: float = 20) -> tuple[int, Any]:
    """Send raw bytes on one connection; (status, JSON body) of the answer (0, None if none)."""
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as sock:
        try:
            for part in parts:
                sock.sendall(part)
                time.sleep(pause)
        except OSError:
            pass  # the server may close while we send; its answer is still to be read
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
    if not data:
        return 0, None
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


def post_bytes(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


# -- X-Forwarded-For ---------------------------------------------------------------------------
def test_spoofed_forwarded_for_does_not_reset_the_rate_limit() -> None:
    _, s, app = fake_app(rate_limit_per_minute=2)
    with serving(app, s) as url:
        codes = [httpx.post(url + "/api/chat", json=CHAT, timeout=30,
                            headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                 for i in range(4)]
    assert codes == [200, 200, 429, 429]


def test_spoofed_forwarded_for_does_not_lift_the_key_lockout() -> None:
    _, s, app = fake_app(api_key="right-key")
    with serving(app, s) as url:
        for i in range(WRONG_KEYS_PER_MINUTE):
            r = httpx.post(url + "/api/chat", json=CHAT, timeout=30, headers={
                "Authorization": "Bearer guess", "X-Forwarded-For": f"203.0.113.{i}"})
            assert r.status_code == 401
        r = httpx.post(url + "/api/chat", json=CHAT, timeout=30, headers={
            "Authorization": "Bearer right-key", "X-Forwarded-For": "198.51.100.7"})
    assert r.status_code == 429 and "Too many wrong API keys" in r.json()["error"]


def test_a_trusted_proxy_forwards_the_client_address() -> None:
    _, s, app = fake_app(rate_limit_per_minute=1, trusted_proxies=["127.0.0.1"])
    with serving(app, s) as url:
        def ask(client: str) -> int:
            return httpx.post(url + "/api/chat", json=CHAT, timeout=30,
                              headers={"X-Forwarded-For": client}).status_code

        assert [ask("203.0.113.1"), ask("203.0.113.2"), ask("203.0.113.1")] == [200, 200, 429]
    # A proxy that is not listed is not believed.
    _, s, app = fake_app(rate_limit_per_minute=1, trusted_proxies=["192.0.2.1"])
    with serving(app, s) as url:
        codes = [httpx.post(url + "/api/chat", json=CHAT, timeout=30,
                            headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                 for i in range(2)]
    assert codes == [200, 429]


# -- Host --------------------------------------------------------------------------------------
def test_foreign_host_is_refused(tmp_path: Path) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1."""
    _, s, app = fake_app(tmp_path, ui=True)
    with serving(app, s) as url:
        port = urlsplit(url).port
        evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        for method, path in [("POST", "/api/chat"), ("GET", "/config"),
                             ("POST", "/v1/chat/completions")]:
            r = httpx.request(method, url + path, json=CHAT, headers=evil, timeout=30)
            assert r.status_code == 400, (path, r.text)
            err = r.json()["error"]
            text = err["message"] if path.startswith("/v1/") else err
            assert "ASSISTANT_ALLOWED_HOSTS" in text
        for host in ("127.0.0.1", "localhost"):
            r = httpx.get(url + "/config", headers={"Host": f"{host}:{port}"}, timeout=30)
            assert r.status_code == 200, host


def test_allowed_hosts_setting() -> None:
    from assistant.server.app import allowed_hosts

    assert allowed_hosts(Settings()) == ["127.0.0.1", "localhost", "[::1]"]
    assert allowed_hosts(Settings(host="0.0.0.0")) == ["127.0.0.1", "localhost", "[::1]"]
    assert allowed_hosts(Settings(host="10.0.0.5"))[-1] == "10.0.0.5"
    assert allowed_hosts(Settings(allowed_hosts=["Chat.Example.org"])) == ["chat.example.org"]
    c = TestClient(fake_app(allowed_hosts=["chat.example.org"])[2],
                   base_url="http://chat.example.org")
    assert c.post("/api/chat", json=CHAT).status_code == 200
    assert c.post("/api/chat", json=CHAT, headers={"Host": "127.0.0.1"}).status_code == 400


# -- huge and slow requests --------------------------------------------------------------------
def test_huge_request_headers_are_refused_and_others_still_served() -> None:
    _, s, app = fake_app()
    with serving(app, s) as url:
        head = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
        status, body = raw(url, head, *[b"a" * 16384] * 6)  # 96 KiB, never finished
        assert status == 431, body
        assert body == {"error": "The request headers are too large (over 65536 bytes)."}
        assert httpx.get(url + "/api/health", timeout=30).status_code == 200


def test_slow_request_headers_time_out() -> None:
    _, s, app = fake_app(header_timeout_s=1)
    with serving(app, s) as url:
        status, body = raw(url, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert status == 408 and "did not arrive within 1 s" in body["error"]
        assert raw(url) == (408, body)  # connected and sent nothing
        # A client that is merely slow but within the deadline is served.
        status, body = raw(url, b"GET /api/health HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n",
                           b"Connection: close\r\n\r\n", pause=0.2)
        assert status == 200 and body["status"] == "ok"


def test_slow_request_body_times_out() -> None:
    fake, s, app = fake_app(body_timeout_s=1)
    body = json.dumps(CHAT).encode()
    with serving(app, s) as url:
        request = post_bytes("/api/chat", body)
        status, answer = raw(url, request[:-10])  # the last 10 bytes never come
        assert status == 408 and answer == {
            "error": "The request body did not arrive within 1 s."}
        status, answer = raw(url, post_bytes("/api/chat", body, "Connection: close\r\n"))
        assert status == 200 and answer["answer"] == ANSWER
    assert len(fake.calls) == 1


def test_idle_keep_alive_connections_are_closed() -> None:
    _, s, app = fake_app(keep_alive_timeout_s=1)
    with serving(app, s) as url:
        u = urlsplit(url)
        with socket.create_connection((u.hostname, u.port), timeout=20) as sock:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):  # ends when the server closes the connection
                data += chunk
        assert data.startswith(b"HTTP/1.1 200")


# -- invalid Unicode ---------------------------------------------------------------------------
LONE_SURROGATE = b'{"messages": [{"role": "user", "content": "a \\ud800"}]}'


def test_lone_surrogate_is_422_naming_the_field() -> None:
    c = TestClient(fake_app()[2], base_url=LOCAL)
    json_ct = {"content-type": "application/json"}
    r = c.post("/api/chat", content=LONE_SURROGATE, headers=json_ct)
    assert r.status_code == 422
    assert "messages.0.content" in r.json()["error"] and "U+D800" in r.json()["error"]
    r = c.post("/v1/chat/completions", content=LONE_SURROGATE, headers=json_ct)
    assert r.status_code == 422 and "U+D800" in r.json()["error"]["message"]
    history = (b'{"messages": [{"role": "user", "content": "\\udfff?"}, {"role": "assistant", '
               b'"content": "a"}, {"role": "user", "content": "b?"}]}')
    r = c.post("/api/chat", content=history, headers=json_ct)
    assert r.status_code == 422 and "messages.0.content" in r.json()["error"]


def test_validate_rejects_lone_surrogates() -> None:
    s = Settings()
    with pytest.raises(InputError, match="question contains an invalid character"):
        validate("a \ud800", [], s)
    with pytest.raises(InputError, match="conversation contains an invalid character"):
        validate("b?", [Message("user", "\udc00")], s)
    assert validate("Zürich 😀?", [], s) == "Zürich 😀?"


@pytest.mark.slow
def test_lone_surrogate_on_the_real_assistant(live_server: LiveServer) -> None:
    r = httpx.post(live_server.url + "/api/chat", content=LONE_SURROGATE, timeout=60,
                   headers={"content-type": "application/json"})
    assert r.status_code == 422 and "U+D800" in r.json()["error"]


# -- Gradio's routes ---------------------------------------------------------------------------
async def multipart(chunks: int) -> AsyncIterator[bytes]:
    yield (b'--xx\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n'
           b"Content-Type: text/plain\r\n\r\n")
    for _ in range(chunks):
        yield b" " * 65536
    yield b"\r\n--xx--\r\n"


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_uploads_are_refused_and_leave_no_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    uploads = tmp_path / "gradio-tmp"
    uploads.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    _, s, app = fake_app(tmp_path, ui=True)
    form = {"content-type": "multipart/form-data; boundary=xx"}

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=LOCAL) as c:
            return [await c.post("/gradio_api/upload", content=multipart(n), headers=form)
                    for n in (1, 20)]  # a small file; a chunked one past the body cap

    for r in in_fresh_loop(run()):
        assert r.status_code == 403
        assert r.json() == {"error": "File uploads are not accepted: the chat page takes "
                                     "no files."}
    with serving(app, s) as url:
        r = httpx.post(url + "/gradio_api/upload", timeout=60, headers=form,
                       content=iter([b"--xx\r\n", b" " * 65536] * 20))
        assert r.status_code == 403
        assert httpx.get(url + "/config", timeout=30).status_code == 200
    assert files_under(uploads) == []


def chat_fn_body() -> dict[str, Any]:
    return {"data": ["What is it?", []]}


def test_gradio_run_answers_429_and_422_not_500(tmp_path: Path,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    fake, _, app = fake_app(tmp_path, ui=True, rate_limit_per_minute=2)
    with TestClient(app, base_url=LOCAL) as c:
        r = c.post("/gradio_api/run/chat", json=chat_fn_body())
        assert r.status_code == 200 and "The answer" in json.dumps(r.json())  # first part
        r = c.post("/gradio_api/run/chat", json={"data": ["   ", []]})
        assert r.status_code == 422 and r.json() == {"error": "The question is empty."}
        r = c.post("/gradio_api/run/chat", json=chat_fn_body())
        assert r.status_code == 429, r.text
        assert r.json()["error"].startswith("Too many questions")
        assert int(r.headers["retry-after"]) >= 1
    assert len(fake.calls) == 1
    assert "Traceback" not in capfd.readouterr().err


def test_gradio_run_busy_is_503(tmp_path: Path) -> None:
    fake = FakeAssistant(Settings(data_dir=tmp_path), busy=True)
    _, _, app = fake_app(tmp_path, ui=True, fake=fake)
    with TestClient(app, base_url=LOCAL) as c:
        r = c.post("/gradio_api/run/chat", json=chat_fn_body())
    assert r.status_code == 503 and r.json() == {"error": "busy, try again"}
    assert r.headers["retry-after"] == "5"


# -- clients that leave ------------------------------------------------------------------------
def leave_early(url: str, path: str, body: dict[str, Any]) -> None:
    """Send a request and close the connection before the first token."""
    data = json.dumps(body).encode()
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=20) as sock:
        sock.sendall(post_bytes(path, data))
        time.sleep(0.3)


@pytest.mark.parametrize(("path", "stream"), [("/api/chat", False), ("/api/chat", True),
                                              ("/v1/chat/completions", False),
                                              ("/v1/chat/completions", True)])
def test_answer_stops_when_the_client_leaves(path: str, stream: bool) -> None:
    fake = SlowAssistant(first_delay=1.0, token_delay=0.05, tokens=200)
    _, s, app = fake_app(fake=fake)
    with serving(app, s) as url:
        leave_early(url, path, {"model": "m", "messages": [Q], "stream": stream})
        assert fake.closed.wait(20), "the answer was never stopped"
        assert fake.produced <= 2 and not fake.finished.is_set()
        # The server is still there for the next client.
        assert httpx.get(url + "/api/health", timeout=30).status_code == 200


def test_answer_runs_to_the_end_for_a_client_that_stays() -> None:
    fake = SlowAssistant(first_delay=0.1, token_delay=0.0, tokens=5)
    c = TestClient(fake_app(fake=fake)[2], base_url=LOCAL)
    r = c.post("/api/chat", json=CHAT)
    assert r.status_code == 200 and r.json()["answer"] == ANSWER
    assert fake.finished.is_set() and not fake.closed.is_set()


class SlowModel:
    """A chat model whose first token takes a while; records whether it was closed."""

    name = "local:slow"
    last_usage = None

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.finished = threading.Event()
        self.tokens = 0

    def stream(self, messages: Sequence[Any], **kwargs: Any) -> Iterator[str]:
        try:
            time.sleep(1.0)
            for word in ("The attacks cost Maersk over $300 million [1]. " * 40).split(" "):
                self.tokens += 1
                yield word + " "
                time.sleep(0.05)
            self.finished.set()
        except GeneratorExit:
            self.closed.set()
            raise

    def complete(self, messages: Sequence[Any], **kwargs: Any) -> str:
        return "".join(self.stream(messages, **kwargs))


@pytest.mark.slow
def test_model_stops_when_the_client_leaves(brochure_data_dir: Path, embedder: Any) -> None:
    """The real assistant and server, with a slow stand-in for the local model."""
    from assistant import Assistant

    model = SlowModel()
    s = Settings(data_dir=brochure_data_dir, generator="local")
    assistant = Assistant(s, embedder=embedder, chat_model=model)  # type: ignore[arg-type]
    with serving(make_app(assistant, s, ui=False), s) as url:
        leave_early(url, "/api/chat", {"messages": [
            {"role": "user", "content": "How much did the NotPetya attack cost Maersk?"}]})
        assert model.closed.wait(30), "the model kept generating for a client that left"
        assert model.tokens <= 2 and not model.finished.is_set()


# -- the one error shape -----------------------------------------------------------------------
def test_every_error_is_json_error(tmp_path: Path) -> None:
    _, _, app = fake_app(tmp_path, ui=True, allowed_origins=["http://site.example"])
    c = TestClient(app, base_url=LOCAL)
    bad_utf8 = {"content-type": "application/json"}
    r = c.post("/api/chat", content=b'{"messages": "\xff"}', headers=bad_utf8)
    assert r.status_code == 400 and set(r.json()) == {"error"}
    assert "UTF-8" in r.json()["error"]
    r = c.post("/v1/chat/completions", content=b'{"messages": "\xff"}', headers=bad_utf8)
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "code"}
    for path in ("/api/chat", "/v1/chat/completions", "/"):
        r = c.options(path)  # not a preflight
        assert r.status_code >= 400 and "detail" not in r.json(), path
        assert isinstance(r.json()["error"], dict if path.startswith("/v1/") else str)
    for path in ("/no/such/page", "/gradio_api/no-such-route", "/v1/nothing"):
        r = c.get(path)
        assert r.status_code == 404 and "detail" not in r.json(), path
    # A preflight asking for a header that is not allowed: CORSMiddleware's plain-text 400.
    r = c.options("/api/chat", headers={"Origin": "http://site.example",
                                        "Access-Control-Request-Method": "POST",
                                        "Access-Control-Request-Headers": "x-secret"})
    assert r.status_code == 400 and r.json() == {"error": "Disallowed CORS headers"}


@pytest.mark.slow
def test_model_failure_note_hides_internal_details(brochure_data_dir: Path, embedder: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from assistant import Assistant
    from assistant.llm import LLMError

    class Failing(SlowModel):
        def stream(self, messages: Sequence[Any], **kwargs: Any) -> Iterator[str]:
            raise LLMError("cannot reach http://10.9.8.7:8080/v1: [Errno 111] "
                           "Connection refused")
            yield ""

    s = Settings(data_dir=brochure_data_dir, generator="local")
    assistant = Assistant(s, embedder=embedder, chat_model=Failing())  # type: ignore[arg-type]
    c = TestClient(make_app(assistant, s, ui=False), base_url=LOCAL)
    r = c.post("/api/chat", json={"messages": [
        {"role": "user", "content": "How much did the NotPetya attack cost Maersk?"}]})
    body = r.json()
    assert r.status_code == 200
    assert body["notes"] == ["the language model failed; this is the extractive answer"]
    assert "10.9.8.7" not in r.text and "Errno" not in r.text
    assert "10.9.8.7" in caplog.text  # the operator still sees why


class QueuedAssistant(FakeAssistant):
    """Its answer waits, like a caller queued for the local model, until its turn comes or
    `caller_gone` says nobody wants it any more."""

    def __init__(self) -> None:
        super().__init__()
        self.gave_up = threading.Event()

    def stream(self, question: str, history: Sequence[Message] = (),
               generator: str | None = None, collection: str | None = None
               ) -> Iterator[Any]:
        from assistant.llm.base import caller_gone

        gone = caller_gone.get()
        if gone is not None and gone.wait(20):
            self.gave_up.set()
        yield from super().stream(question, history, generator, collection)


def test_a_queued_answer_learns_that_its_client_left() -> None:
    fake = QueuedAssistant()
    _, s, app = fake_app(fake=fake)
    with serving(app, s) as url:
        leave_early(url, "/api/chat", CHAT)
        assert fake.gave_up.wait(20)


def test_local_model_gives_up_its_place_in_the_queue() -> None:
    from assistant.llm import LLMCancelled, LocalLlama

    model = LocalLlama(Path("/nonexistent.gguf"), max_queue=2)
    model._active = True  # another answer holds the model
    gone = threading.Event()
    raised: list[Exception] = []

    def wait_for_turn() -> None:
        try:
            model._acquire(None, gone)
        except LLMCancelled as exc:
            raised.append(exc)

    waiter = threading.Thread(target=wait_for_turn)
    waiter.start()
    while model.waiting == 0 and waiter.is_alive():
        time.sleep(0.01)
    gone.set()
    waiter.join(10)
    assert raised and model.waiting == 0 and model.busy  # the running answer keeps the model
