"""The chat page and the widget in real headless Chromium (Debian's /usr/bin/chromium)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import HOSTILE_QUESTION, LiveServer, screenshot, serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]

QUESTION = "How much did the NotPetya attack cost Maersk?"
XSS_QUESTION = ("<img src=x onerror=\"window.__pwned='question'\"> <b>bold?</b> "
                "<script>window.__pwned='q2'</script>")


def expect() -> Any:
    from playwright.sync_api import expect

    return expect


def ask_on_page(page: Any, question: str) -> Any:
    box = page.locator("textarea[data-testid=textbox]")
    expect()(box).to_be_editable()
    box.fill(question)
    box.press("Enter")
    log = page.get_by_role("log", name="chatbot conversation")
    expect()(log.get_by_test_id("user").last).to_contain_text(question[:20])
    expect()(box).to_be_editable(timeout=60_000)  # disabled while the answer streams
    return log


def open_sources(log: Any) -> None:
    title = log.locator(".thought .title").last
    expect()(title).to_contain_text("Sources")
    title.click()


# -- the chat page -----------------------------------------------------------------------------
def test_chat_page_streams_answer_with_sources(page: Any, live_server: LiveServer) -> None:
    page.goto(live_server.url + "/", wait_until="load")
    log = ask_on_page(page, QUESTION)
    bot = log.get_by_test_id("bot")
    expect()(bot.first).to_contain_text("$300 million")
    expect()(bot.first).to_contain_text("[1]")
    open_sources(log)
    expect()(log).to_contain_text("Port security")
    expect()(log).to_contain_text("cyber-diplomacy-in-the-eu.md")
    screenshot(page, "chat-page")


def test_chat_page_like_is_recorded(page: Any, live_server: LiveServer) -> None:
    feedback = live_server.data_dir / "feedback.jsonl"
    before = feedback.read_text().count("\n") if feedback.exists() else 0
    page.goto(live_server.url + "/", wait_until="load")
    ask_on_page(page, "Which countries does the YAKSHA project cover?")
    page.get_by_label("Like", exact=True).first.click()
    for _ in range(50):
        if feedback.exists() and feedback.read_text().count("\n") > before:
            break
        page.wait_for_timeout(100)
    entry = json.loads(feedback.read_text().splitlines()[-1])
    assert entry["rating"] == "like"
    assert "YAKSHA" in entry["question"]
    assert "Malaysia" in entry["answer"]


def test_chat_page_shows_html_in_question_and_document_as_text(
        page: Any, live_server: LiveServer) -> None:
    page.goto(live_server.url + "/", wait_until="load")
    log = ask_on_page(page, XSS_QUESTION)
    expect()(log.get_by_test_id("user").last).to_contain_text("<b>bold?</b>")
    expect()(log.get_by_test_id("user").last).to_contain_text("<img src=x onerror=")
    log = ask_on_page(page, HOSTILE_QUESTION)
    answer = log.get_by_test_id("bot").filter(has_text="Zorblat harbour protocol was")
    expect()(answer.last).to_contain_text("authorities <script>window.")
    expect()(answer.last).to_contain_text('Tallinn <img src="x" onerror=')
    open_sources(log)
    expect()(log).to_contain_text("<script>window.__pwned = 'doc-script'</script>")
    expect()(log).to_contain_text('onerror="window.__pwned')
    assert log.locator("img[src=x], script:not([src])").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    screenshot(page, "chat-page-hostile")


def test_chat_page_behind_the_api_key(page: Any, tmp_path: Path) -> None:
    """With a key set, the page asks for it once; then the chat works on the cookie."""
    from assistant.server.app import KEY_COOKIE, make_app
    from assistant.settings import Settings

    from .fakes import ANSWER, FakeAssistant

    settings = Settings(data_dir=tmp_path, api_key="page-key")
    fake = FakeAssistant(settings)
    with serving(make_app(fake, settings)) as url:
        response = page.goto(url + "/", wait_until="load")
        assert response is not None and response.status == 401
        key = page.get_by_label("API key")
        key.fill("not-the-key")
        key.press("Enter")
        expect()(page.get_by_role("alert")).to_have_text("That key is not right.")
        page.get_by_label("API key").fill("page-key")
        page.get_by_role("button", name="Open").click()
        log = ask_on_page(page, "What is it?")
        expect()(log.get_by_test_id("bot").first).to_contain_text(ANSWER)
        assert page.url == url + "/"
        (cookie,) = [c for c in page.context.cookies() if c["name"] == KEY_COOKIE]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert "page-key" not in cookie["value"]
    assert [q for q, _, _ in fake.calls] == ["What is it?"]


# -- the widget --------------------------------------------------------------------------------
def open_widget(page: Any, url: str) -> Any:
    page.goto(url, wait_until="load")
    launcher = page.locator("[data-assistant-widget] .launcher")
    expect()(launcher).to_be_visible()
    launcher.click()
    panel = page.locator("[data-assistant-widget] .panel")
    expect()(panel).to_be_visible()
    return panel


def ask_widget(panel: Any, question: str) -> Any:
    box = panel.get_by_label("Your question")
    box.fill(question)
    box.press("Enter")
    reply = panel.locator(".msg").last
    expect()(reply).not_to_have_class("msg bot pending", timeout=60_000)
    return reply


def test_widget_on_allowed_origin_answers_with_citations(
        page: Any, live_server: LiveServer) -> None:
    panel = open_widget(page, live_server.allowed.origin + "/")
    expect()(panel).to_contain_text("Ask the brochure")
    reply = ask_widget(panel, QUESTION)
    expect()(reply).to_contain_text("$300 million")
    expect()(reply.locator(".sources")).to_contain_text("Port security")
    reply.locator(".cite").first.click()  # the [1] marker opens its quote
    expect()(reply.locator("details[open] blockquote")).to_contain_text("NotPetya")
    screenshot(page, "widget-allowed-origin")
    # The conversation survives a reload within the browser session.
    page.reload(wait_until="load")
    panel = page.locator("[data-assistant-widget] .panel")
    expect()(panel).to_be_visible()
    expect()(panel.locator(".msg.user")).to_contain_text(QUESTION)
    # A follow-up uses the earlier turns.
    reply = ask_widget(panel, "Which countries does the YAKSHA project cover?")
    expect()(reply).to_contain_text("Malaysia")


def test_widget_on_other_origin_is_refused(page: Any, live_server: LiveServer) -> None:
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if "/api/chat" in r.url else None)
    panel = open_widget(page, live_server.denied.origin + "/")
    reply = ask_widget(panel, QUESTION)
    expect()(reply).to_have_class("msg error")
    expect()(reply).not_to_contain_text("$300 million")
    assert 200 not in answers
    screenshot(page, "widget-refused-origin")


def test_widget_shows_html_as_text(page: Any, live_server: LiveServer) -> None:
    panel = open_widget(page, live_server.allowed.origin + "/")
    panel.get_by_label("New conversation").click()
    reply = ask_widget(panel, XSS_QUESTION)
    expect()(panel.locator(".msg.user").last).to_have_text(XSS_QUESTION)
    reply = ask_widget(panel, HOSTILE_QUESTION)
    expect()(reply.locator(".body")).to_contain_text("authorities <script>window.")
    expect()(reply.locator(".body")).to_contain_text('Tallinn <img src="x" onerror=')
    for details in reply.locator("details").all():
        details.locator("summary").click()
    expect()(reply.locator(".sources")).to_contain_text("<script>window.__pwned = 'doc-script'")
    expect()(reply.locator(".sources")).to_contain_text('onerror="window.__pwned')
    assert page.locator("[data-assistant-widget] img, [data-assistant-widget] b").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    screenshot(page, "widget-hostile")


def test_widget_full_screen_on_small_screens(browser: Any, live_server: LiveServer) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 760}, is_mobile=True,
                                  has_touch=True)
    try:
        page = context.new_page()
        panel = open_widget(page, live_server.allowed.origin + "/")
        box = panel.bounding_box()
        assert box is not None and box["width"] >= 389 and box["height"] >= 759
        ask_widget(panel, QUESTION)
        screenshot(page, "widget-mobile")
    finally:
        context.close()


def test_chat_page_retry_undo_clear(page: Any, live_server: LiveServer) -> None:
    page.goto(live_server.url + "/", wait_until="load")
    log = ask_on_page(page, QUESTION)
    bots = log.get_by_test_id("bot")
    expect()(bots).to_have_count(2)  # the answer and its Sources block
    log.get_by_role("button", name="Retry").click()
    expect()(page.locator("textarea[data-testid=textbox]")).to_be_editable(timeout=60_000)
    expect()(bots).to_have_count(2)
    expect()(bots.first).to_contain_text("$300 million")
    log.get_by_role("button", name="Undo").click()
    expect()(log.get_by_test_id("user")).to_have_count(0)
    expect()(page.locator("textarea[data-testid=textbox]")).to_have_value(QUESTION)
    page.locator("textarea[data-testid=textbox]").press("Enter")
    expect()(bots.first).to_contain_text("$300 million", timeout=60_000)
    page.get_by_role("button", name="Clear").first.click()
    expect()(log.get_by_test_id("bot")).to_have_count(0)
