"""The document view (GET /docs/...) and the links citations carry to it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from assistant.chunking import chunk_document
from assistant.documents import SourceDocument
from assistant.server.app import KEY_COOKIE, KeyCheck, make_app
from assistant.server.docview import Finding, check_link
from assistant.settings import Settings
from assistant.sources import DocumentText
from assistant.types import QUOTE_LINK_CHARS, source_url

from ..pdf import text_pdf
from .conftest import LOCAL
from .fakes import CITATION, QUOTE, FakeAssistant

HTML = {"Accept": "text/html"}
MARK = re.compile(r'<mark id="cite">(.*?)</mark>', re.DOTALL)


def client(**settings: Any) -> TestClient:
    s = Settings(data_dir=Path("/nonexistent"), **settings)
    return TestClient(make_app(FakeAssistant(s), s, ui=False), base_url=LOCAL)


def marked(html: str) -> str | None:
    m = MARK.search(html)
    return m.group(1) if m else None


# -- the view over the fake's document ---------------------------------------------------------
def test_citation_url_opens_the_passage_highlighted() -> None:
    url = CITATION.public()["url"]
    assert url.startswith("docs/doc.md?") and url.endswith("#cite")
    query = parse_qs(urlsplit(url).query)
    assert query["start"] == [str(CITATION.start)] and query["end"] == [str(CITATION.end)]
    assert query["q"] == [QUOTE] and CITATION.version.startswith(query["v"][0])
    r = client().get("/" + url, headers=HTML)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert marked(r.text) == "Quoted &lt;b&gt;text&lt;/b&gt; [sic]."
    assert "Part › Section" in r.text and "changed" not in r.text


def test_markup_in_a_document_or_a_link_stays_text() -> None:
    r = client().get("/docs/doc.md", params={"start": 0, "end": 5, "q": "<script>alert(1)</script>"
                                             "<img src=x onerror=alert(2)>"}, headers=HTML)
    assert r.status_code == 200
    body = r.text
    # The only elements are the page's own: one script, from the app, and no images.
    assert re.findall(r"<script[^>]*>", body) == ['<script src="../docview.js" defer>']
    assert "<img" not in body and "onerror=alert" in body  # shown, escaped
    assert "&lt;script&gt;window.__pwned = &#x27;fake&#x27;&lt;/script&gt;" in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x" in body  # the link's quote
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp and "frame-ancestors 'self'" in csp
    missing = client().get("/docs/<b>x</b>.md", params={"q": "<i>was</i>"}, headers=HTML)
    assert missing.status_code == 404 and "<b>" not in missing.text and "<i>" not in missing.text
    assert "&lt;b&gt;x&lt;/b&gt;.md" in missing.text and "&lt;i&gt;was&lt;/i&gt;" in missing.text


def test_unknown_document_says_so_with_the_quote() -> None:
    r = client().get("/docs/gone.md", params={"start": 3, "end": 9, "q": "old words"},
                     headers=HTML)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "No document of this name is in the index" in r.text and "old words" in r.text


def test_view_obeys_the_api_key() -> None:
    c = client(api_key="k3y")
    url = "/" + CITATION.url
    assert c.get(url).status_code == 401  # a program: JSON
    form = c.get(url, headers=HTML)
    assert form.status_code == 401 and 'type="password"' in form.text
    assert c.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = c.get(url, headers={"Authorization": "Bearer k3y"})
    assert ok.status_code == 200 and marked(ok.text)
    cookie = f"{KEY_COOKIE}={KeyCheck('k3y').cookie_value}"
    assert c.get(url, headers={"Cookie": cookie}).status_code == 200
    # The key form posts back to the view and sends the browser to it again, query kept.
    back = c.post(url.split("#")[0], data={"key": "k3y"}, follow_redirects=False)
    assert back.status_code == 303
    assert back.headers["location"].startswith("./doc.md?start=")
    assert c.get("/docview.js").status_code == 200  # the view's script, like /widget.js


def test_view_obeys_the_origin_rules() -> None:
    c = client(allowed_origins=["http://good.example"])
    url = "/" + CITATION.url
    assert c.get(url, headers={"Origin": "http://evil.example"}).status_code == 403
    assert c.get(url, headers={"Origin": "http://good.example"}).status_code == 200
    csp = c.get(url).headers["content-security-policy"]
    assert "frame-ancestors 'self' http://good.example" in csp


# -- checking a link against the document as it is now -----------------------------------------
def _doc(text: str) -> DocumentText:
    source = SourceDocument(id="d.md", path=Path("d.md"), title="D", text=text, kind="markdown")
    entry = {"fingerprint": f"{source.content_hash}:2:900:m", "title": "D"}
    return DocumentText.build("d.md", entry, chunk_document(source))


OLD = "# D\n\n## Part\n\nFirst sentence here. The harbour has 12 cranes. Last one.\n"
SPAN = (OLD.index("The harbour"), OLD.index("cranes.") + len("cranes."))
SAID = OLD[SPAN[0]:SPAN[1]]


def test_link_checks() -> None:
    old = _doc(OLD)
    assert check_link(old, *SPAN, old.version[:16], SAID) == Finding(SPAN)
    assert check_link(old, *SPAN, "", "").span == SPAN  # a bare link: offsets only
    # Changed after the passage: the quote is still at its offsets.
    later = _doc(OLD + "\nA new paragraph.\n")
    found = check_link(later, *SPAN, old.version[:16], SAID)
    assert found.span == SPAN and found.same and "has not" in found.notice
    # Text inserted before it: found at its new place.
    moved = _doc(OLD.replace("First sentence here.", "A much longer first sentence here."))
    found = check_link(moved, *SPAN, old.version[:16], SAID)
    assert found.span is not None and found.span[0] == SPAN[0] + 14 and not found.same
    assert "another place" in found.notice
    # The passage itself changed: the quote as it was.
    edited = _doc(OLD.replace("12 cranes", "14 cranes"))
    found = check_link(edited, *SPAN, old.version[:16], SAID)
    assert found.span is None and found.quote == SAID and "no longer in it" in found.notice
    # Without its quote, a link to a changed document can only say so.
    found = check_link(edited, *SPAN, old.version[:16], "")
    assert found.span is None and "does not carry its quote" in found.notice
    # A link's quote is cut at QUOTE_LINK_CHARS: a longer passage matches on that start.
    long_text = "# D\n\n" + "word " * 300 + "\n"
    long_doc = _doc(long_text)
    quote = long_text[5:5 + QUOTE_LINK_CHARS]
    assert check_link(long_doc, 5, 5 + 1000, long_doc.version, quote).span == (5, 1005)


# -- a real index: re-ingest, PDFs -------------------------------------------------------------
HARBOUR = """# Harbour of Zork

## Cranes

The harbour of Zork has twelve cranes. They were built by the Vellmar shipyard in 1990.

## Ferries

Three ferries leave the harbour every morning for the islands of Quonset.
"""
OTHER = "# River Plink\n\nThe river Plink floods every spring.\n"
CRANES = "How many cranes does the harbour of Zork have?"
# Page 1 is long enough to be a passage of its own (chunks pack paragraphs up to 900 chars).
LIGHTHOUSE_PAGES = [
    ["The Quillfeather lighthouse stands on the northern cape.",
     *[f"Its keepers log the weather and the passing ships, entry {n} of the day."
       for n in range(1, 12)]],
    [],
    ["This part is about its restoration.",
     "The Quillfeather lighthouse was rebuilt in 1874 after a storm destroyed its lantern."],
]


@pytest.fixture
def real(tmp_path: Path, embedder: Any) -> Iterator[tuple[Any, TestClient, Path]]:
    from assistant import Assistant

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "harbour.md").write_text(HARBOUR)
    (corpus / "river.md").write_text(OTHER)
    (corpus / "lighthouse.pdf").write_bytes(text_pdf(LIGHTHOUSE_PAGES))
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=corpus, generator="extractive")
    assistant = Assistant(settings, embedder=embedder)
    assert assistant.ingest().ok
    yield assistant, TestClient(make_app(assistant, settings, ui=False), base_url=LOCAL), corpus


def _cite(c: TestClient, question: str, needle: str) -> dict[str, Any]:
    r = c.post("/api/chat", json={"messages": [{"role": "user", "content": question}]})
    assert r.status_code == 200, r.text
    return next(x for x in r.json()["citations"] if needle in x["text"])


@pytest.mark.slow
def test_citations_carry_offsets_page_and_url(real: tuple[Any, TestClient, Path]) -> None:
    _, c, _ = real
    cite = _cite(c, CRANES, "twelve cranes")
    assert HARBOUR[cite["start"]:cite["end"]] == cite["text"] and cite["page"] is None
    assert cite["url"].startswith("docs/harbour.md?")
    pdf = _cite(c, "When was the Quillfeather lighthouse rebuilt?", "1874")
    assert pdf["document"] == "lighthouse.pdf" and pdf["page"] == 3  # page 2 is empty
    view = c.get("/" + pdf["url"], headers=HTML)
    assert view.status_code == 200 and "1874" in (marked(view.text) or "")
    assert '<a href="#page-3">page 3</a>' in view.text and 'id="page-1">Page 1<' in view.text
    assert "PDF, 3 pages" in view.text


@pytest.mark.slow
def test_link_survives_an_unrelated_reingest(real: tuple[Any, TestClient, Path]) -> None:
    assistant, c, corpus = real
    cite = _cite(c, CRANES, "twelve cranes")
    (corpus / "river.md").write_text(OTHER + "\nIt is 40 km long.\n")
    (corpus / "extra.md").write_text("# Extra\n\nSomething else entirely.\n")
    report = assistant.ingest()
    assert report.updated == ["river.md"] and "harbour.md" in report.unchanged
    view = c.get("/" + cite["url"], headers=HTML)
    assert view.status_code == 200 and marked(view.text) == cite["text"]
    assert "changed" not in view.text
    # The document itself changed after the passage: the link still opens it.
    (corpus / "harbour.md").write_text(HARBOUR + "\n## Tugs\n\nTwo tugs help the ferries.\n")
    assistant.ingest()
    view = c.get("/" + cite["url"], headers=HTML)
    assert marked(view.text) == cite["text"] and "the cited passage has not" in view.text
    assert cite["url"] != _cite(c, CRANES, "twelve cranes")["url"]  # a new content hash


@pytest.mark.slow
def test_link_to_a_changed_document_explains_itself(real: tuple[Any, TestClient, Path]) -> None:
    assistant, c, corpus = real
    cite = _cite(c, CRANES, "twelve cranes")
    (corpus / "harbour.md").write_text(HARBOUR.replace("twelve cranes", "fourteen cranes"))
    assistant.ingest()
    view = c.get("/" + cite["url"], headers=HTML)
    assert view.status_code == 200 and marked(view.text) is None
    assert "This document has changed since the link was made" in view.text
    assert f"<blockquote>{cite['text']}</blockquote>" in view.text  # the quote as it was
    assert "fourteen cranes" in view.text  # and the document as it is now
    # Moved, not changed: the quote is highlighted at its new place.
    (corpus / "harbour.md").write_text(HARBOUR.replace("## Cranes\n", "## Cranes\n\nNew.\n"))
    assistant.ingest()
    view = c.get("/" + cite["url"], headers=HTML)
    assert marked(view.text) == cite["text"] and "at another place" in view.text
    # Removed: the view says so, with the quote.
    (corpus / "harbour.md").unlink()
    assistant.ingest()
    view = c.get("/" + cite["url"], headers=HTML)
    assert view.status_code == 404 and cite["text"] in view.text


def test_source_url_is_relative_and_encoded() -> None:
    url = source_url("sub dir/a (1).md", 3, 9, "ab" * 32, "x & y <z> (w)")
    assert url == ("docs/sub%20dir/a%20%281%29.md?start=3&end=9&v=abababababababab"
                   "&q=x%20%26%20y%20%3Cz%3E%20%28w%29#cite")
