"""Server fixtures: one real server (uvicorn on a free loopback port) per session, two host-page
servers on other ports (an allowed origin and one that is not), and one headless Chromium.

The server's index holds the brochure plus a small document full of HTML/script payloads, so
one server serves both the normal and the hostile tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ..conftest import BROCHURE, ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
LOCAL = "http://127.0.0.1"  # base URL of in-process test clients: a host the server answers

# A document whose text is a hostile payload: it must show as text and never run.
PAYLOAD_SCRIPT = "<script>window.__pwned = 'doc-script'</script>"
PAYLOAD_IMG = '<img src="x" onerror="window.__pwned = \'doc-img\'">'
HOSTILE_DOC = f"""---
title: Zorblat harbour protocol
---

# The Zorblat harbour protocol

## Signatories

The Zorblat harbour protocol was signed by twelve harbour authorities {PAYLOAD_SCRIPT} in 2031.
The Zorblat secretariat keeps its archive in Tallinn {PAYLOAD_IMG} and meets every spring.
"""
HOSTILE_QUESTION = "Zorblat harbour protocol signatories"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any, settings: Any = None) -> Iterator[str]:
    """Serve an ASGI app as `assistant serve` does (uvicorn with the server's connection
    limits) on a free loopback port, in a thread; yields its URL."""
    import uvicorn

    from assistant.server.transport import uvicorn_config
    from assistant.settings import Settings

    port = free_port()
    settings = (settings or Settings(data_dir=Path("/nonexistent"))).with_overrides(
        host="127.0.0.1", port=port)
    server = uvicorn.Server(uvicorn_config(app, settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the test server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class HostPage:
    """A page on another origin that embeds the widget with one script tag."""

    server: ThreadingHTTPServer
    html: dict[str, str]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def start_host_page() -> HostPage:
    html: dict[str, str] = {"/": "<!doctype html><title>empty</title>"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.get(self.path.split("?")[0])
            if body is None:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return HostPage(server, html)


def demo_page(app_url: str) -> str:
    """ui/demo.html with its script tag pointed at the test server."""
    text = (ROOT / "ui" / "demo.html").read_text(encoding="utf-8")
    return text.replace("http://127.0.0.1:7860", app_url)


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    allowed: HostPage
    denied: HostPage
    assistant: Any


@pytest.fixture(scope="session")
def server_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = tmp_path_factory.mktemp("server-corpus")
    shutil.copy(BROCHURE, corpus / BROCHURE.name)
    (corpus / "zorblat-protocol.md").write_text(HOSTILE_DOC, encoding="utf-8")
    return corpus


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, server_corpus: Path,
                embedder: Any) -> Iterator[LiveServer]:
    """`assistant serve`'s app on a free port, in a thread of this process."""
    import uvicorn

    from assistant import Assistant, Settings
    from assistant.server.app import make_app
    from assistant.server.transport import uvicorn_config

    allowed, denied = start_host_page(), start_host_page()
    data = tmp_path_factory.mktemp("server-data")
    port = free_port()
    settings = Settings(data_dir=data, corpus_dir=server_corpus, generator="extractive",
                        host="127.0.0.1", port=port, allowed_origins=[allowed.origin],
                        rate_limit_per_minute=1000, api_key="", chroma_url="")
    assistant = Assistant(settings, embedder=embedder)
    report = assistant.ingest()
    assert report.ok and report.documents == 2, report
    app = make_app(assistant, settings)
    server = uvicorn.Server(uvicorn_config(app, settings, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    for host in (allowed, denied):
        host.html["/"] = demo_page(url)
    yield LiveServer(url, data, allowed, denied, assistant)
    server.should_exit = True
    thread.join(timeout=10)
    for host in (allowed, denied):
        host.server.shutdown()


# -- the browser -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        reason = (f"Debian's chromium is missing at {CHROMIUM}: install it with "
                  "`apt-get install -y chromium` (never `playwright install`)")
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI=1: browser tests must run)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled")
    return path


def in_fresh_loop(coro: Any) -> Any:
    """asyncio.run in a thread of its own: the browser tests' sync Playwright keeps an event
    loop running in the main thread for the whole session."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
