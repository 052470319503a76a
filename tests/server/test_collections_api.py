"""Collections over HTTP, with the real assistant (embedded Chroma, the real embedding model):
/api/chat, /v1/chat/completions, /api/collections, /api/health, the page's Gradio API with
?collection=, the document view, and the per-collection origin rule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ..conftest import CHARTER_QUESTION, FERRY_QUESTION, CollectionsData
from .conftest import LOCAL

pytestmark = pytest.mark.slow

ALLOWED = "http://allowed.example"
FERRY_SITE = "http://ferries.example"


def ask(question: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}], **extra}


@pytest.fixture(scope="module")
def app_client(collections_data: CollectionsData, embedder: Any) -> Iterator[TestClient]:
    """The whole app (the page included) over the two collections; `ferries` is open only
    to FERRY_SITE among the other origins."""
    from assistant import Assistant, Settings
    from assistant.server.app import make_app

    settings = Settings(data_dir=collections_data.data_dir,
                        corpus_dir=collections_data.corpus_dir, generator="extractive",
                        allowed_origins=[ALLOWED, FERRY_SITE], rate_limit_per_minute=1000,
                        collection_origins={"ferries": [FERRY_SITE]})
    assistant = Assistant(settings, embedder=embedder)
    with TestClient(make_app(assistant, settings), base_url=LOCAL) as c:
        yield c


def documents_cited(body: dict[str, Any]) -> set[str]:
    return {c["document"] for c in body["citations"]}


# -- /api/chat -------------------------------------------------------------------------------
def test_chat_answers_from_the_named_collection_only(app_client: TestClient) -> None:
    r = app_client.post("/api/chat", json=ask(FERRY_QUESTION, collection="ferries"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert "backup tapes" in body["answer"] and body["collection"] == "ferries"
    assert documents_cited(body) == {"ferry-guidelines.txt"}

    r = app_client.post("/api/chat", json=ask(FERRY_QUESTION))  # default
    assert r.json()["refused"] is True and r.json()["collection"] == "default"
    assert r.json()["citations"] == []
    r = app_client.post("/api/chat", json=ask(CHARTER_QUESTION, collection="default"))
    assert documents_cited(r.json()) == {"harbour-charter.md"}
    r = app_client.post("/api/chat", json=ask(CHARTER_QUESTION, collection="ferries"))
    assert r.json()["refused"] is True
    assert not documents_cited(r.json()) & {"harbour-charter.md", "river-compact.md"}


def test_chat_stream_names_its_collection(app_client: TestClient) -> None:
    r = app_client.post("/api/chat", json=ask(FERRY_QUESTION, collection="ferries",
                                              stream=True))
    final = [json.loads(block.split("data: ", 1)[1]) for block in r.text.split("\n\n")
             if block.startswith("event: final")]
    assert final and final[0]["collection"] == "ferries"
    assert documents_cited(final[0]) == {"ferry-guidelines.txt"}


@pytest.mark.parametrize(("collection", "status", "text"), [
    ("nope", 404, "Unknown collection 'nope'; the collections are: default, ferries."),
    ("Ferries", 422, "Invalid collection name 'Ferries'"),
    ("../ferries", 422, "Invalid collection name"),
    ("", 422, "Invalid collection name"),
])
def test_unknown_or_invalid_collection_is_an_error(app_client: TestClient, collection: str,
                                                   status: int, text: str) -> None:
    r = app_client.post("/api/chat", json=ask(FERRY_QUESTION, collection=collection))
    assert r.status_code == status and text in r.json()["error"]
    r = app_client.post("/api/chat", json=ask(FERRY_QUESTION, collection=collection,
                                              stream=True))
    assert r.status_code == status  # refused before any event
    r = app_client.post("/v1/chat/completions", json=ask(FERRY_QUESTION, collection=collection))
    assert r.status_code == status and text in r.json()["error"]["message"]


def test_collection_must_be_a_string(app_client: TestClient) -> None:
    r = app_client.post("/api/chat", json=ask(FERRY_QUESTION, collection=["ferries"]))
    assert r.status_code == 422 and "collection" in r.json()["error"]


# -- /v1 ---------------------------------------------------------------------------------------
def test_openai_endpoint_takes_a_collection_field_or_model(app_client: TestClient) -> None:
    for extra in ({"collection": "ferries"}, {"model": "ferries"},
                  {"model": "ferries", "collection": "ferries"}):
        r = app_client.post("/v1/chat/completions", json=ask(FERRY_QUESTION, **extra))
        assert r.status_code == 200, (extra, r.text)
        body = r.json()
        assert "backup tapes" in body["choices"][0]["message"]["content"]
        assert body["collection"] == "ferries"
        assert documents_cited(body) == {"ferry-guidelines.txt"}
    # A model naming nothing known is ignored, as before: the default collection.
    r = app_client.post("/v1/chat/completions", json=ask(FERRY_QUESTION, model="gpt-4o"))
    assert r.status_code == 200 and r.json()["refused"] is True
    assert r.json()["collection"] == "default"
    r = app_client.post("/v1/chat/completions", json=ask(FERRY_QUESTION, model="ferries",
                                                         collection="default"))
    assert r.status_code == 422 and "name one" in r.json()["error"]["message"]
    models = [m["id"] for m in app_client.get("/v1/models").json()["data"]]
    assert models == ["extractive", "default", "ferries"]


def test_openai_stream_last_chunk_names_the_collection(app_client: TestClient) -> None:
    r = app_client.post("/v1/chat/completions", json=ask(FERRY_QUESTION, model="ferries",
                                                         stream=True))
    chunks = [json.loads(line[6:]) for line in r.text.splitlines()
              if line.startswith("data: {")]
    assert chunks[-1]["collection"] == "ferries"
    assert {c["document"] for c in chunks[-1]["citations"]} == {"ferry-guidelines.txt"}


# -- listings ----------------------------------------------------------------------------------
def test_collections_and_health_list_the_counts(app_client: TestClient) -> None:
    r = app_client.get("/api/collections")
    assert r.status_code == 200
    listed = r.json()["collections"]
    assert [c["name"] for c in listed] == ["default", "ferries"]
    assert listed[0]["documents"] == 2 and listed[1]["documents"] == 1
    assert all(c["chunks"] > 0 for c in listed)
    health = app_client.get("/api/health").json()
    assert health["status"] == "ok" and health["collections"] == listed
    assert health["documents"] == 2  # the top level stays the default collection's


# -- origins -----------------------------------------------------------------------------------
def test_a_collection_may_be_closed_to_other_sites(app_client: TestClient) -> None:
    def chat(origin: str | None, collection: str = "ferries") -> Any:
        headers = {"Origin": origin} if origin else {}
        return app_client.post("/api/chat", json=ask(FERRY_QUESTION, collection=collection),
                               headers=headers)

    assert chat(FERRY_SITE).status_code == 200
    assert chat(None).status_code == 200  # a program, not a browser on another site
    assert chat(LOCAL).status_code == 200  # the app's own pages
    refused = chat(ALLOWED)
    assert refused.status_code == 403
    assert refused.json()["error"] == (f"Origin {ALLOWED} may not use the collection "
                                       "'ferries'; the collection_origins setting names the "
                                       "sites that may.")
    assert refused.headers["access-control-allow-origin"] == ALLOWED  # so a page can read why
    assert chat(ALLOWED, "default").status_code == 200  # default is open to allowed origins
    assert chat("http://evil.example", "default").status_code == 403  # not allowed at all
    r = app_client.post("/v1/chat/completions", json=ask(FERRY_QUESTION, model="ferries"),
                        headers={"Origin": ALLOWED})
    assert r.status_code == 403
    seen = app_client.get("/api/collections", headers={"Origin": ALLOWED}).json()
    assert [c["name"] for c in seen["collections"]] == ["default"]
    r = app_client.post("/gradio_api/run/chat?collection=ferries",
                        json={"data": [FERRY_QUESTION, []]}, headers={"Origin": ALLOWED})
    assert r.status_code == 403


# -- the page's Gradio API and the document view -----------------------------------------------
def page_answer(c: TestClient, query: str) -> Any:
    return c.post(f"/gradio_api/run/chat{query}", json={"data": [FERRY_QUESTION, []]})


def test_page_query_parameter_picks_the_collection(app_client: TestClient) -> None:
    r = page_answer(app_client, "?collection=ferries")
    assert r.status_code == 200, r.text
    assert "backup tapes" in json.dumps(r.json())  # (the run route returns the first part)
    r = page_answer(app_client, "")
    assert r.status_code == 200 and "backup tapes" not in json.dumps(r.json())
    assert "couldn't find this" in json.dumps(r.json())
    r = page_answer(app_client, "?collection=nope")
    assert r.status_code == 404 and "Unknown collection 'nope'" in r.json()["error"]
    r = page_answer(app_client, "?collection=..%2Fx")
    assert r.status_code == 422


def test_document_view_reads_the_collection(app_client: TestClient) -> None:
    body = app_client.post("/api/chat", json=ask(FERRY_QUESTION, collection="ferries")).json()
    url = body["citations"][0]["url"]
    assert "&c=ferries&" in url
    r = app_client.get("/" + url.split("#")[0])
    assert r.status_code == 200 and "<mark id=\"cite\">" in r.text
    assert "backup tapes" in r.text
    # The same document is not in default; a collection that does not exist is a 404 too.
    assert app_client.get("/docs/ferry-guidelines.txt").status_code == 404
    r = app_client.get("/docs/ferry-guidelines.txt?c=nope")
    assert r.status_code == 404 and "Unknown collection" in r.text
    assert app_client.get("/docs/ferry-guidelines.txt?c=B%20d").status_code == 422


def test_origin_of_a_queued_page_call_is_checked_too() -> None:
    """A queued Gradio call may carry a copy of its request (headers, URL) rather than the
    request itself: the origin rule reads the copy."""
    import gradio as gr

    from assistant.server.origins import CollectionOrigins, OriginPolicy
    from assistant.server.ui import _scope_and_headers

    origins = CollectionOrigins({"ferries": [FERRY_SITE]}, OriginPolicy([ALLOWED, FERRY_SITE]))
    for origin, refused in ((ALLOWED, True), (FERRY_SITE, False), ("http://127.0.0.1", False)):
        request = gr.Request(headers={"origin": origin, "host": "127.0.0.1"},
                             url="http://127.0.0.1/gradio_api/queue/join")
        scope, headers = _scope_and_headers(request)
        assert (origins.refusal("ferries", scope, headers) is not None) is refused, origin
