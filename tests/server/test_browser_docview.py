"""Following a citation in a real browser: the chat page and the widget open the document view
in a new tab with the quote highlighted and in view; a PDF citation shows its page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..pdf import text_pdf
from .conftest import LiveServer, screenshot, serving
from .test_browser import QUESTION, ask_on_page, ask_widget, expect, open_sources, open_widget
from .test_docview import LIGHTHOUSE_PAGES

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def follow(page: Any, link: Any) -> Any:
    """Click a link that opens a new tab; the tab, loaded."""
    with page.context.expect_page() as opened:
        link.click()
    view = opened.value
    view.wait_for_load_state("load")
    return view


def test_chat_page_citation_opens_the_document(page: Any, live_server: LiveServer) -> None:
    page.goto(live_server.url + "/", wait_until="load")
    log = ask_on_page(page, QUESTION)
    open_sources(log)
    link = log.get_by_role("link", name="open in the document").first
    expect()(link).to_have_attribute("target", "_blank")
    screenshot(page, "chat-page-source-link")
    view = follow(page, link)
    assert view.url.startswith(live_server.url + "/docs/cyber-diplomacy-in-the-eu.md?")
    mark = view.locator("mark#cite")
    expect()(mark).to_contain_text("NotPetya ransomware attacks against Maersk")
    expect()(mark).to_be_in_viewport()
    expect()(view.locator(".where")).to_contain_text("Port security")
    expect()(view.locator(".notice")).to_have_count(0)
    screenshot(view, "docview-from-chat-page")


def test_widget_citation_opens_the_document(page: Any, live_server: LiveServer) -> None:
    panel = open_widget(page, live_server.allowed.origin + "/")
    panel.get_by_label("New conversation").click()
    reply = ask_widget(panel, QUESTION)
    reply.locator(".cite").first.click()  # opens the quote, with its link
    link = reply.locator("details[open] a.open").first
    expect()(link).to_have_text("Open in the document")
    expect()(link).to_have_attribute("target", "_blank")
    expect()(link).to_have_attribute("rel", "noopener")
    assert (link.get_attribute("href") or "").startswith(live_server.url + "/docs/")
    screenshot(page, "widget-source-link")
    view = follow(page, link)
    mark = view.locator("mark#cite")
    expect()(mark).to_contain_text("NotPetya")
    expect()(mark).to_be_in_viewport()
    screenshot(view, "docview-from-widget")


def test_document_markup_is_inert_in_the_view(page: Any, live_server: LiveServer) -> None:
    page.goto(live_server.url + "/docs/zorblat-protocol.md?start=0&end=1", wait_until="load")
    main = page.locator("main")
    expect()(main).to_contain_text("authorities <script>window.__pwned = 'doc-script'</script>")
    expect()(main).to_contain_text('Tallinn <img src="x" onerror=')
    assert page.locator("main script, main img, img").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None


def test_pdf_citation_shows_its_page(page: Any, tmp_path: Path, embedder: Any) -> None:
    from assistant import Assistant, Settings
    from assistant.server.app import make_app

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "lighthouse.pdf").write_bytes(text_pdf(LIGHTHOUSE_PAGES))
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=corpus, generator="extractive")
    assistant = Assistant(settings, embedder=embedder)
    assert assistant.ingest().ok
    with serving(make_app(assistant, settings), settings) as url:
        page.goto(url + "/", wait_until="load")
        log = ask_on_page(page, "When was the Quillfeather lighthouse rebuilt?")
        open_sources(log)
        expect()(log).to_contain_text("lighthouse.pdf · page 3")
        view = follow(page, log.get_by_role("link", name="open in the document").first)
        expect()(view.locator(".where")).to_contain_text("page 3")
        expect()(view.locator(".meta")).to_contain_text("PDF, 3 pages")
        mark = view.locator("mark#cite")
        expect()(mark).to_contain_text("rebuilt in 1874")
        expect()(mark).to_be_in_viewport()
        expect()(view.locator("#page-3")).to_be_in_viewport()
        screenshot(view, "docview-pdf")
