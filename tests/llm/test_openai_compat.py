"""OpenAICompatible against a scripted fake SSE server (fast) and llama.cpp's real
OpenAI-compatible server started on 127.0.0.1 with start_llamacpp_server (slow)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from assistant.llm import ChatModel, LLMBusy, LLMError, OpenAICompatible
from assistant.llm.llamacpp_server import LlamaCppServer, start_llamacpp_server

USER_OK = [{"role": "user", "content": "Reply with the word OK."}]
COUNT = [
    {"role": "user", "content": "Count from 1 to 20, separated by commas. Output only the numbers."}
]


def _chunk(content: str | None = None, finish: str | None = None, usage: dict | None = None) -> str:
    d: dict[str, Any] = {"object": "chat.completion.chunk", "choices": []}
    if content is not None or finish is not None:
        d["choices"] = [
            {"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}
        ]
    if usage:
        d["usage"] = usage
    return "data: " + json.dumps(d) + "\n\n"


GOOD = (
    ": keep-alive\n\n"
    + _chunk("Hel")
    + _chunk("lo")
    + _chunk(finish="stop")
    + _chunk(usage={"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9})
    + "data: [DONE]\n\n"
)


class _Handler(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, dict, dict]]] = []

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: str, ctype: str = "text/event-stream") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.requests.append((self.path, dict(self.headers), body))
        scenario = self.path.split("/")[1]
        if scenario == "good":
            self._send(200, GOOD)
        elif scenario == "malformed":
            self._send(200, _chunk("a") + "data: {not json\n\n")
        elif scenario == "truncated":
            self._send(200, _chunk("partial"))
        elif scenario == "http500":
            self._send(500, "internal failure " + "x" * 2000, "text/plain")
        elif scenario == "busy":
            self._send(503, '{"error":{"message":"Loading model"}}', "application/json")
        elif scenario == "errorchunk":
            self._send(200, _chunk("a") + 'error: {"code":500,"message":"kv cache full"}\n\n')
        elif scenario == "json":
            self._send(
                200,
                json.dumps(
                    {
                        "choices": [{"message": {"content": "whole"}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
                    }
                ),
                "application/json",
            )
        elif scenario == "slow":
            time.sleep(2)
            self._send(200, GOOD)
        else:
            self._send(404, "no such scenario", "text/plain")


@pytest.fixture(scope="module")
def fake_server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _client(root: str, scenario: str, **kw: Any) -> OpenAICompatible:
    return OpenAICompatible(f"{root}/{scenario}/v1", "m", **kw)


def test_fake_good_stream_usage_and_request_shape(fake_server: str) -> None:
    m = _client(fake_server, "good", api_key="sekrit")
    assert isinstance(m, ChatModel) and m.name == "openai:m"
    assert list(m.stream(USER_OK, max_tokens=5, stop=["\n"])) == ["Hel", "lo"]
    assert m.last_usage == {"prompt_tokens": 7, "completion_tokens": 2}
    path, headers, body = _Handler.requests[-1]
    assert path == "/good/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sekrit"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 5 and body["stop"] == ["\n"] and body["model"] == "m"


def test_fake_malformed_sse(fake_server: str) -> None:
    with pytest.raises(LLMError, match="malformed SSE"):
        _client(fake_server, "malformed").complete(USER_OK)


def test_fake_truncated_stream(fake_server: str) -> None:
    with pytest.raises(LLMError, match="ended the stream before finishing"):
        _client(fake_server, "truncated").complete(USER_OK)


def test_fake_http_error_has_status_and_short_excerpt(fake_server: str) -> None:
    with pytest.raises(LLMError) as ei:
        _client(fake_server, "http500").complete(USER_OK)
    msg = str(ei.value)
    assert "HTTP 500" in msg and "internal failure" in msg
    assert len(msg) < 500


def test_fake_503_is_busy(fake_server: str) -> None:
    with pytest.raises(LLMBusy, match="Loading model"):
        _client(fake_server, "busy").complete(USER_OK)


def test_fake_error_event_mid_stream(fake_server: str) -> None:
    with pytest.raises(LLMError, match="kv cache full"):
        _client(fake_server, "errorchunk").complete(USER_OK)


def test_fake_non_streaming_json_reply(fake_server: str) -> None:
    m = _client(fake_server, "json")
    assert m.complete(USER_OK) == "whole"
    assert m.last_usage == {"prompt_tokens": 3, "completion_tokens": 1}


def test_fake_timeout(fake_server: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(LLMError, match="timed out"):
        _client(fake_server, "slow").complete(USER_OK, timeout_s=0.3)
    assert time.perf_counter() - t0 < 1.5


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_server_down_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with pytest.raises(LLMError, match=f"cannot reach LLM server at {url}"):
        OpenAICompatible(url, "m", timeout_s=5).complete(USER_OK)


def test_server_refuses_non_loopback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        start_llamacpp_server(tmp_path / "m.gguf", host="0.0.0.0")


def test_server_start_failure_reports_log(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(LLMError, match="not a GGUF") as ei:
        start_llamacpp_server(bad, startup_timeout_s=60, log_path=tmp_path / "server.log")
    assert "exited with code" in str(ei.value)


# -- the real llama.cpp server ----------------------------------------------------------------

API_KEY = "test-key-123"


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[LlamaCppServer]:
    h = start_llamacpp_server(
        model_path, host="127.0.0.1", port=0, api_key=API_KEY, n_ctx=2048, n_threads=2
    )
    yield h
    h.stop()


@pytest.mark.slow
def test_real_server_streams_text_and_usage(server: LlamaCppServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    m = OpenAICompatible(server.base_url, server.model_name, api_key=API_KEY, timeout_s=600)
    stamps: list[float] = []
    deltas: list[str] = []
    for d in m.stream(COUNT, max_tokens=48):
        stamps.append(time.perf_counter())
        deltas.append(d)
    assert len(deltas) >= 10 and stamps[-1] - stamps[0] > 0.3  # incremental, not one blob
    assert "1" in "".join(deltas) and "10" in "".join(deltas)
    assert m.last_usage is not None
    assert m.last_usage["completion_tokens"] >= len(deltas) - 1
    assert 20 < m.last_usage["prompt_tokens"] < 100
    assert "OK" in m.complete(USER_OK, max_tokens=8).upper()
    m.close()


@pytest.mark.slow
def test_real_server_reports_token_probabilities_when_known_to_be_llama_cpp(
        server: LlamaCppServer) -> None:
    probs: list[dict[str, object]] = []
    plain = OpenAICompatible(server.base_url, server.model_name, api_key=API_KEY)
    assert "OK" in "".join(plain.stream(USER_OK, max_tokens=8, token_probs=probs)).upper()
    assert probs == []  # not asked of a server that might reject the field
    llama = OpenAICompatible(server.base_url, server.model_name, api_key=API_KEY,
                             send_grammar=True)
    text = "".join(llama.stream(USER_OK, max_tokens=8, token_probs=probs))
    assert probs and "".join(str(p["token"]) for p in probs) == text
    assert all(p.get("top_logprobs") for p in probs)
    plain.close()
    llama.close()


@pytest.mark.slow
def test_real_server_rejects_wrong_api_key(server: LlamaCppServer) -> None:
    m = OpenAICompatible(server.base_url, server.model_name, api_key="wrong")
    with pytest.raises(LLMError, match="HTTP 401"):
        m.complete(USER_OK, max_tokens=4)


@pytest.mark.slow
def test_real_server_timeout(server: LlamaCppServer) -> None:
    m = OpenAICompatible(server.base_url, server.model_name, api_key=API_KEY)
    with pytest.raises(LLMError, match="timed out"):
        m.complete(COUNT, max_tokens=200, timeout_s=0.05)


@pytest.mark.slow
def test_real_server_with_official_openai_client(server: LlamaCppServer) -> None:
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)
    assert server.model_name in [m.id for m in client.models.list().data]
    msgs: Any = USER_OK  # plain dicts; the client's TypedDicts are stricter than needed here
    r = client.chat.completions.create(
        model=server.model_name, messages=msgs, max_tokens=8, temperature=0
    )
    assert "OK" in (r.choices[0].message.content or "").upper()
    assert r.usage is not None and r.usage.completion_tokens >= 1
    chunks = client.chat.completions.create(
        model=server.model_name, messages=msgs, max_tokens=8, stream=True
    )
    parts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "OK" in "".join(parts).upper()


@pytest.mark.slow
def test_real_server_stops_by_pid(server: LlamaCppServer) -> None:
    # keep last in this module: it stops the module's server
    pid = server.pid
    os.kill(pid, 0)  # alive
    t0 = time.perf_counter()
    server.stop()
    assert time.perf_counter() - t0 < 10
    assert not server.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(LLMError, match="cannot reach LLM server"):
        OpenAICompatible(server.base_url, server.model_name, api_key=API_KEY).complete(USER_OK)
