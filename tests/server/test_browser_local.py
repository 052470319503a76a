"""The chat page and the widget streaming answers from the real local model, in Chromium.

The other browser tests use the extractive generator (instant, one piece of text); these
check that a language model's answer reaches the page piece by piece and ends with its
checked citations.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import demo_page, screenshot, serving, start_host_page
from .test_browser import QUESTION, ask_on_page, expect, open_sources, open_widget

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory, server_corpus: Path, embedder: Any,
                 local_model: Any) -> Iterator[tuple[str, str]]:
    """(app URL, allowed host page URL) for an app whose generator is the local model."""
    from assistant import Assistant, Settings
    from assistant.server.app import make_app

    host = start_host_page()
    settings = Settings(data_dir=tmp_path_factory.mktemp("local-server-data"),
                        corpus_dir=server_corpus, generator="local", host="127.0.0.1",
                        allowed_origins=[host.origin], rate_limit_per_minute=1000,
                        api_key="", chroma_url="")
    assistant = Assistant(settings, embedder=embedder, chat_model=local_model)
    assert assistant.ingest().ok
    assert assistant.mode == "local"
    try:
        with serving(make_app(assistant, settings)) as url:
            host.html["/"] = demo_page(url)
            yield url, host.origin + "/"
    finally:
        host.server.shutdown()


def test_widget_streams_a_local_model_answer(page: Any, local_server: tuple[str, str]) -> None:
    _, host_url = local_server
    panel = open_widget(page, host_url)
    box = panel.get_by_label("Your question")
    box.fill(QUESTION)
    box.press("Enter")
    # While the model writes, the reply is pending and already shows text.
    pending = panel.locator(".msg.bot.pending .body")
    expect()(pending).not_to_be_empty(timeout=60_000)
    partial = pending.inner_text()
    reply = panel.locator(".msg.bot").last
    expect()(reply).not_to_have_class("msg bot pending", timeout=120_000)
    expect()(reply).to_contain_text("300 million")
    expect()(reply.locator(".sources")).to_contain_text("Port security")
    assert partial.strip() and len(partial) <= len(reply.inner_text())
    screenshot(page, "widget-local-model")


def test_chat_page_answers_from_the_local_model(page: Any,
                                                local_server: tuple[str, str]) -> None:
    url, _ = local_server
    page.goto(url + "/", wait_until="load")
    log = ask_on_page(page, QUESTION)
    bot = log.get_by_test_id("bot").first
    expect()(bot).to_contain_text("300 million", timeout=120_000)
    expect()(bot).to_contain_text("[1]")
    open_sources(log)
    expect()(log).to_contain_text("Port security")
    screenshot(page, "chat-page-local-model")
