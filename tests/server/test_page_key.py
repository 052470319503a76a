"""A configured API key protects the chat page and Gradio's own routes, not only /api and /v1."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from assistant.server.app import KEY_COOKIE, WRONG_KEYS_PER_MINUTE, make_app
from assistant.settings import Settings

from .conftest import LOCAL, serving
from .fakes import ANSWER, FakeAssistant

KEY = "s3cret-key"
BEARER = {"Authorization": f"Bearer {KEY}"}
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
GRADIO_PATHS = ["/", "/config", "/gradio_api/info", "/theme.css"]


def page_app(tmp_path: Path, api_key: str) -> tuple[FakeAssistant, TestClient]:
    settings = Settings(data_dir=tmp_path, api_key=api_key)
    fake = FakeAssistant(settings)
    return fake, TestClient(make_app(fake, settings), follow_redirects=False,
                            base_url=LOCAL)


def another_client(c: TestClient, host: str) -> TestClient:
    """The same app, seen from another client address."""
    return TestClient(c.app, follow_redirects=False, client=(host, 50000), base_url=LOCAL)


def test_without_a_key_the_page_is_open(tmp_path: Path) -> None:
    _, c = page_app(tmp_path, "")
    for path in GRADIO_PATHS:
        assert c.get(path).status_code == 200, path
    assert c.post("/api/chat", json={"messages": [{"role": "user", "content": "Hi?"}]}
                  ).status_code == 200


def test_key_protects_gradio_routes(tmp_path: Path) -> None:
    fake, c = page_app(tmp_path, KEY)
    for path in GRADIO_PATHS:
        r = c.get(path)
        assert r.status_code == 401, path
        assert r.json() == {"error": "Missing or wrong API key: send the header "
                                     "'Authorization: Bearer <key>'."}
        assert r.headers["www-authenticate"] == "Bearer"
        assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get(path, headers=BEARER).status_code == 200, path
    r = c.get("/gradio_api/info", headers=BEARER)
    assert "/chat" in r.json()["named_endpoints"]
    # Asking through Gradio's API without the key never reaches the assistant.
    for path in ("/gradio_api/call/chat", "/gradio_api/queue/join", "/gradio_api/run/chat"):
        r = c.post(path, json={"data": ["What is it?"], "fn_index": 0, "session_hash": "x"})
        assert r.status_code == 401, path
    assert fake.calls == []
    # Still open: the widget's script and monitoring.
    assert c.get("/widget.js").status_code == 200
    assert c.get("/api/health").json()["status"] == "ok"


def test_browser_types_the_key_once_and_gets_a_strict_cookie(tmp_path: Path) -> None:
    _, c = page_app(tmp_path, KEY)
    r = c.get("/", headers=HTML)
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in r.text and 'type="password"' in r.text
    assert r.headers["cache-control"] == "no-store"
    assert "not right" not in r.text

    r = c.post("/", data={"key": "wrong"}, headers=HTML)
    assert r.status_code == 401 and "That key is not right." in r.text
    assert KEY_COOKIE not in c.cookies

    r = c.post("/?lang=en", data={"key": KEY}, headers=HTML)
    assert r.status_code == 303 and r.headers["location"] == "./?lang=en"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{KEY_COOKIE}=") and KEY not in cookie
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attrs
    assert "secure" not in attrs  # plain http here; set when the request came over https

    # The cookie now opens the page and its routes, as the page's own scripts need.
    for path in GRADIO_PATHS:
        assert c.get(path).status_code == 200, path
    c.cookies.clear()
    c.cookies.set(KEY_COOKIE, "0" * 64)
    assert c.get("/gradio_api/info").status_code == 401


def test_key_form_redirects_back_to_the_same_page(tmp_path: Path) -> None:
    _, c = page_app(tmp_path, KEY)
    r = c.post("/gradio_api/info", data={"key": KEY})
    assert r.status_code == 303 and r.headers["location"] == "./info"
    c.cookies.clear()
    r = c.post("/", content=b"key=" + b"x" * 5000,
               headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and r.json()["error"].endswith("(over 4096 bytes).")
    # /api and /v1 get no form: their 401 stays JSON.
    r = c.post("/api/chat", data={"key": KEY}, headers=HTML)
    assert r.status_code == 401 and "API key" in r.json()["error"]


def test_wrong_keys_typed_into_the_form_are_limited(tmp_path: Path) -> None:
    _, c = page_app(tmp_path, KEY)
    for _ in range(WRONG_KEYS_PER_MINUTE):
        r = c.post("/", data={"key": "guess"}, headers=HTML)
        assert r.status_code == 401 and "That key is not right." in r.text
    # Past the limit the key is not even checked: the right one gets 429 too, and no cookie.
    r = c.post("/", data={"key": KEY}, headers=HTML)
    assert r.status_code == 429 and r.headers["content-type"].startswith("text/html")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert f"Try again in {r.headers['retry-after']} s." in r.text
    assert "set-cookie" not in r.headers and KEY_COOKIE not in c.cookies
    r = c.get("/gradio_api/info", headers=BEARER)
    assert r.status_code == 429 and "Too many wrong API keys." in r.json()["error"]
    assert r.headers["retry-after"]
    assert c.get("/", headers=HTML).status_code == 401  # the page still shows the form
    # Other clients are not affected.
    other = another_client(c, "10.0.0.2")
    r = other.post("/", data={"key": KEY}, headers=HTML)
    assert r.status_code == 303 and KEY_COOKIE in r.headers["set-cookie"]


def test_wrong_bearer_keys_are_limited(tmp_path: Path) -> None:
    fake, c = page_app(tmp_path, KEY)
    wrong = {"Authorization": "Bearer guess"}
    chat = {"messages": [{"role": "user", "content": "Hi?"}]}
    requests = [("/api/chat", chat), ("/v1/chat/completions", {"model": "m", **chat}),
                ("/gradio_api/info", None)]
    for i in range(WRONG_KEYS_PER_MINUTE):
        path, body = requests[i % len(requests)]
        r = c.post(path, json=body, headers=wrong) if body else c.get(path, headers=wrong)
        assert r.status_code == 401, path
    r = c.post("/api/chat", json=chat, headers=BEARER)
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["error"].startswith("Too many wrong API keys.")
    r = c.post("/v1/chat/completions", json={"model": "m", **chat}, headers=BEARER)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert c.get("/gradio_api/info", headers=BEARER).status_code == 429
    r = c.post("/", data={"key": KEY}, headers=HTML)  # the form is closed to this client too
    assert r.status_code == 429 and "Too many wrong keys." in r.text
    assert fake.calls == []
    assert c.get("/api/health").status_code == 200  # public paths need no key


def test_a_right_key_works_before_the_limit(tmp_path: Path) -> None:
    fake, c = page_app(tmp_path, KEY)
    chat = {"messages": [{"role": "user", "content": "Hi?"}]}
    for _ in range(WRONG_KEYS_PER_MINUTE - 1):
        assert c.post("/api/chat", json=chat,
                      headers={"Authorization": "Bearer guess"}).status_code == 401
    # Right keys never count: many of them, then the last allowed wrong one, then the form.
    for _ in range(3 * WRONG_KEYS_PER_MINUTE):
        assert c.get("/gradio_api/info", headers=BEARER).status_code == 200
    assert c.post("/api/chat", json=chat, headers=BEARER).status_code == 200
    assert c.post("/", data={"key": "guess"}, headers=HTML).status_code == 401
    assert c.post("/", data={"key": KEY}, headers=HTML).status_code == 429
    # A session cookie (from another client here) still works from a blocked address: the
    # cookie is no guess, so a neighbour behind the same NAT keeps the page.
    r = another_client(c, "10.0.0.3").post("/", data={"key": KEY}, headers=HTML)
    assert r.status_code == 303
    c.cookies.set(KEY_COOKIE, r.cookies[KEY_COOKIE])
    assert c.get("/gradio_api/info").status_code == 200
    assert [q for q, _, _ in fake.calls] == ["Hi?"]


@pytest.mark.slow
def test_gradio_client_needs_the_key(tmp_path: Path) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    settings = Settings(data_dir=tmp_path, api_key=KEY)
    fake = FakeAssistant(settings)
    with serving(make_app(fake, settings)) as url:
        with pytest.raises(AuthenticationError):
            Client(url, verbose=False).predict("What is it?", api_name="/chat")
        r = httpx.post(url + "/gradio_api/call/chat", json={"data": ["What is it?"]})
        assert r.status_code == 401
        assert fake.calls == []
        result = Client(url, verbose=False, headers=BEARER).predict("What is it?",
                                                                     api_name="/chat")
        assert ANSWER in json.dumps(result)
        assert [q for q, _, _ in fake.calls] == ["What is it?"]
