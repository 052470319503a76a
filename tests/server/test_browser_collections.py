"""Collections and the Documents tab in real headless Chromium: the widget's data-collection,
the page's ?collection=, and an operator who uploads a document, asks about it and removes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..conftest import CHARTER_QUESTION, FERRY_QUESTION, build_collections
from .conftest import HostPage, demo_page, screenshot, serving, start_host_page
from .test_browser import ask_on_page, ask_widget, expect, open_sources, open_widget

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ADMIN = "tab-admin-key"
REFUSAL = "I couldn't find this in the documents."
LIGHTHOUSE = """# The Quillmoor lighthouse

## Keepers

The Quillmoor lighthouse has been kept by the Arvenson family since 1911. Its lamp is lit
by a clockwork mechanism that the keepers wind every four hours.
"""
LIGHTHOUSE_QUESTION = "Which family keeps the Quillmoor lighthouse?"


@dataclass
class CollectionsServer:
    url: str
    host: HostPage
    data_dir: Path


@pytest.fixture(scope="module")
def collections_server(tmp_path_factory: pytest.TempPathFactory,
                       embedder: Any) -> Iterator[CollectionsServer]:
    """The two collections (default, ferries) served with an admin key; a host page on an
    allowed origin embeds the widget: at / for default, at /ferries and /nope with
    data-collection."""
    from assistant import Assistant, Settings
    from assistant.server.app import make_app

    data = build_collections(tmp_path_factory.mktemp("browser-collections"), embedder)
    host = start_host_page()
    settings = Settings(data_dir=data.data_dir, corpus_dir=data.corpus_dir,
                        generator="extractive", allowed_origins=[host.origin],
                        rate_limit_per_minute=1000, admin_key=ADMIN)
    assistant = Assistant(settings, embedder=embedder)
    with serving(make_app(assistant, settings), settings) as url:
        page = demo_page(url)
        host.html["/"] = page
        for name in ("ferries", "nope"):
            host.html[f"/{name}"] = page.replace(
                'data-title="Ask the brochure"',
                f'data-title="Ask the {name}" data-collection="{name}"')
        yield CollectionsServer(url, host, data.data_dir)
    host.server.shutdown()


# -- the widget --------------------------------------------------------------------------------
def test_widget_answers_from_its_collection_only(page: Any,
                                                 collections_server: CollectionsServer) -> None:
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.post_data or "") if "/api/chat" in r.url
            else None)
    panel = open_widget(page, collections_server.host.origin + "/ferries")
    expect()(panel).to_contain_text("Ask the ferries")
    reply = ask_widget(panel, FERRY_QUESTION)
    expect()(reply.locator(".body")).to_contain_text("backup tapes")
    expect()(reply.locator(".sources")).to_contain_text("ferry-guidelines.txt")
    assert '"collection":"ferries"' in sent[-1]
    reply = ask_widget(panel, CHARTER_QUESTION)
    expect()(reply.locator(".body")).to_have_text(REFUSAL)
    expect()(reply).not_to_contain_text("Aldby")
    screenshot(page, "widget-collection")

    # The same page without data-collection asks `default`, whose passages hold no ferry.
    panel = open_widget(page, collections_server.host.origin + "/")
    reply = ask_widget(panel, FERRY_QUESTION)
    expect()(reply.locator(".body")).to_have_text(REFUSAL)
    reply = ask_widget(panel, CHARTER_QUESTION)
    expect()(reply.locator(".body")).to_contain_text("Aldby")


def test_widget_with_an_unknown_collection_shows_the_error(
        page: Any, collections_server: CollectionsServer) -> None:
    panel = open_widget(page, collections_server.host.origin + "/nope")
    reply = ask_widget(panel, FERRY_QUESTION)
    expect()(reply).to_have_class("msg error")
    expect()(reply).to_contain_text("Unknown collection 'nope'")


# -- the page's ?collection= -------------------------------------------------------------------
def test_page_query_parameter_answers_from_that_collection(
        page: Any, collections_server: CollectionsServer) -> None:
    page.goto(collections_server.url + "/?collection=ferries", wait_until="load")
    expect()(page.locator("#collection-notice")).to_contain_text(
        "Answers come from the collection ferries")
    log = ask_on_page(page, FERRY_QUESTION)
    expect()(log.get_by_test_id("bot").first).to_contain_text("backup tapes")
    open_sources(log)
    expect()(log).to_contain_text("ferry-guidelines.txt")
    link = log.get_by_role("link", name="open in the document").first
    assert "c=ferries" in (link.get_attribute("href") or "")
    screenshot(page, "chat-page-collection")
    log = ask_on_page(page, CHARTER_QUESTION)
    expect()(log.get_by_test_id("bot").nth(2)).to_contain_text(REFUSAL)
    expect()(log).not_to_contain_text("Aldby")

    page.goto(collections_server.url + "/", wait_until="load")
    expect()(page.locator("#collection-notice")).to_be_hidden()
    log = ask_on_page(page, FERRY_QUESTION)
    expect()(log.get_by_test_id("bot").first).to_contain_text(REFUSAL)


def test_page_with_an_unknown_collection_says_so(page: Any,
                                                 collections_server: CollectionsServer) -> None:
    page.goto(collections_server.url + "/?collection=nope", wait_until="load")
    expect()(page.locator("#collection-notice")).to_contain_text("Unknown collection 'nope'")
    box = page.locator("textarea[data-testid=textbox]")
    box.fill(FERRY_QUESTION)
    box.press("Enter")
    expect()(page.get_by_text("Unknown collection 'nope'").last).to_be_visible()
    expect()(page.get_by_test_id("bot")).to_have_count(0)


# -- the Documents tab -------------------------------------------------------------------------
def ask_in_chat_tab(page: Any, question: str) -> Any:
    page.get_by_role("tab", name="Chat").click()
    return ask_on_page(page, question)


def test_documents_tab_upload_ask_remove(page: Any, tmp_path: Path,
                                         collections_server: CollectionsServer) -> None:
    page.goto(collections_server.url + "/", wait_until="load")
    html = page.content()
    assert ADMIN not in html
    page.get_by_role("tab", name="Documents").click()
    tab = page.locator("#documents")
    key = tab.get_by_label("Admin key")
    key.fill("not-the-key")
    key.press("Enter")
    expect()(tab.locator(".unlock-status")).to_have_text("That key is not right.")
    key.fill(ADMIN)
    tab.get_by_role("button", name="Unlock").click()
    rows = tab.locator("table.list tbody tr")
    expect()(rows).to_have_count(2)
    expect()(tab.locator("tr[data-document='harbour-charter.md']")).to_contain_text(
        "The Lindqvist Harbour Charter")
    expect()(tab.locator("tr[data-document='harbour-charter.md']")).to_contain_text(
        "corpus folder")
    assert tab.get_by_label("Admin key").input_value() == ""  # the key left the field

    document = tmp_path / "Quillmoor Lighthouse.md"
    document.write_text(LIGHTHOUSE, encoding="utf-8")
    junk = tmp_path / "scan.pdf"
    junk.write_bytes(b"\x00\x01binary junk" * 100)
    tab.locator("input[type=file]").set_input_files([str(document), str(junk)])
    tab.get_by_role("button", name="Upload").click()
    results = tab.locator(".results li")
    expect()(results).to_have_count(2, timeout=60_000)
    expect()(results.nth(0)).to_have_attribute("data-status", "added")
    expect()(results.nth(0)).to_contain_text("as quillmoor-lighthouse.md")
    expect()(results.nth(1)).to_have_attribute("data-status", "rejected")
    expect()(results.nth(1)).to_contain_text("not a PDF")
    expect()(tab.locator(".progress")).to_be_hidden()
    row = tab.locator("tr[data-document='quillmoor-lighthouse.md']")
    expect()(row).to_contain_text("The Quillmoor lighthouse")
    expect()(row).to_contain_text("markdown")
    expect()(row).to_contain_text("UTC")
    screenshot(page, "documents-tab")

    log = ask_in_chat_tab(page, LIGHTHOUSE_QUESTION)
    expect()(log.get_by_test_id("bot").first).to_contain_text("Arvenson")
    open_sources(log)
    expect()(log).to_contain_text("quillmoor-lighthouse.md")

    page.get_by_role("tab", name="Documents").click()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Remove quillmoor-lighthouse.md").click()
    expect()(row).to_have_count(0, timeout=60_000)
    expect()(rows).to_have_count(2)
    assert not (collections_server.data_dir / "uploads" / "default" /
                "quillmoor-lighthouse.md").exists()

    log = ask_in_chat_tab(page, LIGHTHOUSE_QUESTION)
    expect()(log.get_by_test_id("bot").nth(2)).to_contain_text(REFUSAL)
    assert "Arvenson" not in log.get_by_test_id("bot").nth(2).inner_text()


def test_no_documents_tab_without_an_admin_key(page: Any, tmp_path: Path) -> None:
    from assistant.server.app import make_app
    from assistant.settings import Settings

    from .fakes import FakeAssistant

    settings = Settings(data_dir=tmp_path)
    with serving(make_app(FakeAssistant(settings), settings)) as url:
        page.goto(url + "/", wait_until="load")
        expect()(page.locator("textarea[data-testid=textbox]")).to_be_editable()
        expect()(page.get_by_role("tab", name="Documents")).to_have_count(0)
        expect()(page.locator("#documents")).to_have_count(0)
