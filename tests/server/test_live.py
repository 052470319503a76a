"""The real server on loopback: real answers, the official clients, the page's own headers."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .conftest import LiveServer

pytestmark = pytest.mark.slow

MAERSK = "How much did the NotPetya attack cost Maersk?"


def test_health_reports_index_and_generator(live_server: LiveServer) -> None:
    body = httpx.get(live_server.url + "/api/health").json()
    assert body["documents"] == 2 and body["chunks"] > 20
    assert body["generator"] and body["generators"]


def test_api_chat_answers_with_citation(live_server: LiveServer) -> None:
    r = httpx.post(live_server.url + "/api/chat",
                   json={"messages": [{"role": "user", "content": MAERSK}]}, timeout=60)
    assert r.status_code == 200
    body = r.json()
    assert "$300 million" in body["answer"] and not body["refused"]
    assert any("$300 million" in c["text"] for c in body["citations"])


def test_api_chat_follow_up_uses_history(live_server: LiveServer) -> None:
    first = httpx.post(live_server.url + "/api/chat", timeout=60, json={"messages": [
        {"role": "user", "content": "What is the YAKSHA project?"}]}).json()
    r = httpx.post(live_server.url + "/api/chat", timeout=60, json={"messages": [
        {"role": "user", "content": "What is the YAKSHA project?"},
        {"role": "assistant", "content": first["answer"]},
        {"role": "user", "content": "Which countries does it cover?"}]})
    assert r.status_code == 200 and "Malaysia" in r.json()["answer"]


def test_api_chat_refuses_off_topic(live_server: LiveServer) -> None:
    r = httpx.post(live_server.url + "/api/chat", timeout=60, json={"messages": [
        {"role": "user", "content": "What is a good recipe for banana bread?"}]})
    body = r.json()
    assert r.status_code == 200 and body["refused"] is True
    assert body["answer"] == "I couldn't find this in the documents."


def test_api_chat_streams_sse(live_server: LiveServer) -> None:
    events = []
    with httpx.stream("POST", live_server.url + "/api/chat", timeout=60, json={
            "messages": [{"role": "user", "content": MAERSK}], "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
    assert events[0][0] == "delta" and events[-1][0] == "final"
    final = events[-1][1]
    assert "$300 million" in final["answer"] and final["citations"]


def test_openai_client(live_server: LiveServer) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=live_server.url + "/v1", api_key="unused", max_retries=0)
    resp = client.chat.completions.create(
        model="extractive", messages=[{"role": "user", "content": MAERSK}])
    assert "$300 million" in (resp.choices[0].message.content or "")
    citations = (resp.model_extra or {})["citations"]
    assert any("$300 million" in c["text"] for c in citations)

    text, last = "", None
    for chunk in client.chat.completions.create(
            model="extractive", stream=True,
            messages=[{"role": "user", "content": "Which countries does YAKSHA cover?"}]):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        last = chunk
    assert "Malaysia" in text
    assert last is not None and (last.model_extra or {})["citations"]

    from openai import UnprocessableEntityError

    with pytest.raises(UnprocessableEntityError, match="question is empty"):
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": " "}])


def test_gradio_client_calls_the_chat_endpoint(live_server: LiveServer) -> None:
    from gradio_client import Client

    result = Client(live_server.url, verbose=False).predict(MAERSK, api_name="/chat")
    assert "$300 million" in json.dumps(result, ensure_ascii=False)


def test_many_concurrent_requests(live_server: LiveServer) -> None:
    def ask(i: int) -> int:
        q = [MAERSK, "Which countries does YAKSHA cover?", "What is the NIS Directive?"][i % 3]
        return httpx.post(live_server.url + "/api/chat", timeout=120,
                          json={"messages": [{"role": "user", "content": q}]}).status_code

    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(ask, range(24))) == [200] * 24


def test_page_is_offline_and_framing_is_restricted(live_server: LiveServer) -> None:
    r = httpx.get(live_server.url + "/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert csp == f"frame-ancestors 'self' {live_server.allowed.origin}"
    assert r.headers["x-content-type-options"] == "nosniff"
    # No script, stylesheet or font from anywhere but the app itself.
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', r.text)
    assert [u for u in external if not u.startswith(live_server.url)] == []
    assert "fonts.googleapis" not in r.text
    # The page's own API refuses other sites, like /api does.
    r = httpx.post(live_server.url + "/gradio_api/queue/join",
                   headers={"Origin": live_server.denied.origin}, json={})
    assert r.status_code == 403


def test_serve_command_is_registered() -> None:
    from assistant import cli

    argv = ["serve", "--port", "9999"]
    args = cli.build_parser(argv).parse_args(argv)
    assert args.port == 9999 and args.func.__module__ == "assistant.server.cli"
