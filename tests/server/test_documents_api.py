"""Document management over HTTP (/api/documents), with the real assistant: off without an
admin key; the admin key and only it; uploads checked by content; limits; a failing file
leaves the index as it was; removal; collections made by an upload."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from assistant.server.app import KEY_COOKIE

from ..conftest import CHARTER_QUESTION, FERRY_QUESTION, build_collections
from ..pdf import text_pdf
from .conftest import LOCAL

pytestmark = pytest.mark.slow

ADMIN = "admin-key-for-tests"
CHAT_KEY = "chat-key-for-tests"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
QUILLMOOR = b"""# The Quillmoor lighthouse

## Keepers

The Quillmoor lighthouse has been kept by the Arvenson family since 1911. Its lamp is lit
by a clockwork mechanism that the keepers wind every four hours.
"""
QUILLMOOR_QUESTION = "Which family keeps the Quillmoor lighthouse?"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(range(256)) * 4


def make(tmp_path: Path, embedder: Any, **settings: Any) -> tuple[Any, TestClient]:
    from assistant import Assistant, Settings
    from assistant.server.app import make_app

    data = build_collections(tmp_path, embedder)
    s = Settings(data_dir=data.data_dir, corpus_dir=data.corpus_dir, generator="extractive",
                 rate_limit_per_minute=1000, **settings)
    assistant = Assistant(s, embedder=embedder)
    return assistant, TestClient(make_app(assistant, s, ui=False), base_url=LOCAL)


@pytest.fixture
def admin(tmp_path: Path, embedder: Any) -> tuple[Any, TestClient]:
    return make(tmp_path, embedder, admin_key=ADMIN, api_key=CHAT_KEY,
                upload_max_bytes=20_000, upload_max_files=3)


def upload(c: TestClient, *files: tuple[str, bytes], headers: dict[str, str] | None = None,
           **form: str) -> Any:
    return c.post("/api/documents", files=[("files", f) for f in files], data=form,
                  headers=AS_ADMIN if headers is None else headers)


def chat(c: TestClient, question: str, **extra: Any) -> dict[str, Any]:
    r = c.post("/api/chat", json={"messages": [{"role": "user", "content": question}],
                                  **extra}, headers={"Authorization": f"Bearer {CHAT_KEY}"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def uploads_of(assistant: Any, collection: str = "default") -> list[str]:
    folder = Path(assistant.settings.data_dir) / "uploads" / collection
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# -- off, and the keys --------------------------------------------------------------------------
def test_without_an_admin_key_document_management_does_not_exist(tmp_path: Path,
                                                                 embedder: Any) -> None:
    _, c = make(tmp_path, embedder, api_key=CHAT_KEY)
    for method, path in (("GET", "/api/documents"), ("POST", "/api/documents"),
                         ("DELETE", "/api/documents/harbour-charter.md")):
        for headers in ({}, {"Authorization": f"Bearer {CHAT_KEY}"}):
            r = c.request(method, path, headers=headers)
            assert r.status_code == 404, (method, path, r.text)
            assert "document management is off" in r.json()["error"]
    assert (tmp_path / "corpus" / "harbour-charter.md").exists()


def test_only_the_admin_key_opens_it(admin: tuple[Any, TestClient]) -> None:
    _, c = admin
    r = c.get("/api/documents")
    assert r.status_code == 401 and r.json()["error"].startswith("Missing admin key")
    assert r.headers["www-authenticate"] == "Bearer"
    assert c.get("/api/documents", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # The chat key is not the admin key, and the page's session cookie does not stand in.
    assert c.get("/api/documents",
                 headers={"Authorization": f"Bearer {CHAT_KEY}"}).status_code == 401
    c.post("/", data={"key": CHAT_KEY}, headers={"Accept": "text/html"})
    assert any(cookie.name == KEY_COOKIE for cookie in c.cookies.jar)
    assert c.get("/api/documents").status_code == 401
    c.cookies.clear()
    # The admin key opens only this: the chat API still wants the chat key.
    assert c.post("/api/chat", json={"messages": [{"role": "user", "content": "Hi?"}]},
                  headers=AS_ADMIN).status_code == 401
    r = c.get("/api/documents", headers=AS_ADMIN)
    assert r.status_code == 200
    body = r.json()
    assert body["collection"] == "default" and body["collections"] == ["default", "ferries"]
    listed = {d["id"]: d for d in body["documents"]}
    assert set(listed) == {"harbour-charter.md", "river-compact.md"}
    charter = listed["harbour-charter.md"]
    assert charter["title"] == "The Lindqvist Harbour Charter" and charter["type"] == "markdown"
    assert charter["chunks"] > 0 and charter["ingested"].endswith("Z")
    assert charter["source"] == "corpus" and charter["removable"] is False
    r = c.get("/api/documents?collection=ferries", headers=AS_ADMIN)
    assert [d["id"] for d in r.json()["documents"]] == ["ferry-guidelines.txt"]
    assert r.json()["documents"][0]["type"] == "text"
    assert c.get("/api/documents?collection=nope", headers=AS_ADMIN).status_code == 404


def test_wrong_admin_keys_are_locked_out(admin: tuple[Any, TestClient]) -> None:
    _, c = admin
    for _ in range(10):
        assert c.get("/api/documents",
                     headers={"Authorization": "Bearer guess"}).status_code == 401
    r = c.get("/api/documents", headers=AS_ADMIN)  # not even the right key, for now
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_other_sites_cannot_reach_it(tmp_path: Path, embedder: Any) -> None:
    _, c = make(tmp_path, embedder, admin_key=ADMIN, allowed_origins=["http://site.example"])
    r = c.get("/api/documents", headers={**AS_ADMIN, "Origin": "http://site.example"})
    assert r.status_code == 403
    assert c.get("/api/documents", headers={**AS_ADMIN, "Origin": LOCAL}).status_code == 200


# -- uploads -----------------------------------------------------------------------------------
def test_upload_ask_and_remove(admin: tuple[Any, TestClient]) -> None:
    assistant, c = admin
    assert chat(c, QUILLMOOR_QUESTION)["refused"] is True
    before = assistant.index.state()["generation"]
    r = upload(c, ("../../Quillmoor Lighthouse.md", QUILLMOOR))
    assert r.status_code == 200, r.text
    (result,) = r.json()["files"]
    assert result == {"file": "../../Quillmoor Lighthouse.md", "status": "added",
                      "document": "quillmoor-lighthouse.md", "error": None}
    assert r.json()["documents"] == 3
    assert uploads_of(assistant) == ["quillmoor-lighthouse.md"]  # inside its folder only
    assert assistant.index.state()["generation"] == before + 1
    answer = chat(c, QUILLMOOR_QUESTION)
    assert "Arvenson" in answer["answer"]
    assert {x["document"] for x in answer["citations"]} == {"quillmoor-lighthouse.md"}
    assert chat(c, QUILLMOOR_QUESTION, collection="ferries")["refused"] is True
    listed = {d["id"]: d for d in c.get("/api/documents", headers=AS_ADMIN).json()["documents"]}
    doc = listed["quillmoor-lighthouse.md"]
    assert doc["title"] == "The Quillmoor lighthouse" and doc["source"] == "upload"
    assert doc["removable"] is True and doc["type"] == "markdown" and doc["chunks"] >= 1

    r = c.delete("/api/documents/quillmoor-lighthouse.md", headers=AS_ADMIN)
    assert r.status_code == 200 and r.json()["removed"] is True and r.json()["documents"] == 2
    assert uploads_of(assistant) == []
    assert assistant.index.state()["generation"] == before + 2
    answer = chat(c, QUILLMOOR_QUESTION)
    assert answer["refused"] is True and "Arvenson" not in str(answer)
    assert c.delete("/api/documents/quillmoor-lighthouse.md",
                    headers=AS_ADMIN).status_code == 404


def test_documents_not_uploaded_are_not_removed(admin: tuple[Any, TestClient],
                                                tmp_path: Path) -> None:
    _, c = admin
    r = c.delete("/api/documents/harbour-charter.md", headers=AS_ADMIN)
    assert r.status_code == 409 and "corpus folder" in r.json()["error"]
    r = c.delete("/api/documents/ferry-guidelines.txt?collection=ferries", headers=AS_ADMIN)
    assert r.status_code == 409 and "assistant ingest" in r.json()["error"]
    assert (tmp_path / "corpus" / "harbour-charter.md").exists()
    assert "Aldby" in chat(c, CHARTER_QUESTION)["answer"]
    for path in ("/api/documents/..%2F..%2Fcorpus%2Fharbour-charter.md",
                 "/api/documents/nothing.md", "/api/documents/.previous-x"):
        assert c.delete(path, headers=AS_ADMIN).status_code == 404
    # An upload may not take the name of a document from the corpus folder.
    r = upload(c, ("harbour-charter.md", QUILLMOOR))
    assert r.status_code == 422 and r.json()["files"][0]["status"] == "rejected"
    assert "not uploaded is already in the collection" in r.json()["files"][0]["error"]
    assert "Aldby" in chat(c, CHARTER_QUESTION)["answer"]


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("report.pdf", os.urandom(3000).replace(b"%PDF", b"xxxx"), "not a PDF"),
    ("setup.txt", EXE, "it looks like a Windows program"),
    ("notes.md", b"\x89PNG\r\n\x1a\n" + bytes(600), "it looks like a PNG image"),
    ("latin1.txt", "caf\u00e9 cr\u00e8me ".encode("latin-1") * 20, "UTF-8 text"),
    ("empty.txt", b"", "empty file"),
])
def test_uploads_are_checked_by_content(admin: tuple[Any, TestClient], name: str,
                                        content: bytes, reason: str) -> None:
    assistant, c = admin
    state = assistant.index.state()
    r = upload(c, (name, content))
    assert r.status_code == 422, r.text
    (result,) = r.json()["files"]
    assert result["status"] == "rejected" and reason in result["error"], result
    assert assistant.index.state() == state  # the index is as it was
    assert uploads_of(assistant) == []


def test_office_files_are_recognised_by_content(tmp_path: Path, embedder: Any) -> None:
    import io
    import zipfile

    from ..office import write_docx

    assistant, c = make(tmp_path, embedder, admin_key=ADMIN)  # a Word file is ~40 kB
    # A Word file under a name that says nothing: its zip table of contents says Word.
    docx = write_docx(tmp_path / "manual.docx").read_bytes()
    r = upload(c, ("lighthouse manual", docx))
    assert r.status_code == 200, r.text
    assert r.json()["files"][0]["document"] == "lighthouse-manual.docx"
    answer = chat(c, "How often does the keeper inspect the main lamp?")
    assert "Tuesday" in answer["answer"]
    assert {x["document"] for x in answer["citations"]} == {"lighthouse-manual.docx"}
    # A zip that is no Word, PowerPoint or EPUB file is refused, whatever its name.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("notes.txt", "hello")
    state = assistant.index.state()
    r = upload(c, ("slides.pptx", buf.getvalue()))
    assert r.status_code == 422
    assert "not a Word, PowerPoint or EPUB file" in r.json()["files"][0]["error"]
    assert assistant.index.state() == state


def test_a_file_that_fails_to_ingest_changes_nothing(admin: tuple[Any, TestClient]) -> None:
    """A PDF header on a broken file passes the content check and fails in the ingest: the
    other files of the request go in, it leaves neither a file nor a trace in the index."""
    assistant, c = admin
    broken = b"%PDF-1.4\n" + os.urandom(2000)
    good = text_pdf([["The Quillmoor lighthouse is kept by the Arvenson family."]])
    r = upload(c, ("broken.pdf", broken), ("quillmoor.txt", good))
    assert r.status_code == 200, r.text
    by_file = {f["file"]: f for f in r.json()["files"]}
    assert by_file["broken.pdf"]["status"] == "failed" and by_file["broken.pdf"]["error"]
    assert by_file["quillmoor.txt"] == {"file": "quillmoor.txt", "status": "added",
                                        "document": "quillmoor.pdf", "error": None}
    assert uploads_of(assistant) == ["quillmoor.pdf"]  # stored as what its content is
    assert set(assistant.manifest()) == {"harbour-charter.md", "river-compact.md",
                                         "quillmoor.pdf"}
    listed = {d["id"]: d for d in c.get("/api/documents", headers=AS_ADMIN).json()["documents"]}
    assert listed["quillmoor.pdf"]["type"] == "pdf" and listed["quillmoor.pdf"]["pages"] == 1

    # A broken new version of an uploaded document: the old one stays, file and passages.
    state = assistant.index.state()
    r = upload(c, ("quillmoor.pdf", broken))
    assert r.status_code == 422 and r.json()["files"][0]["status"] == "failed"
    assert assistant.index.state()["active"] == state["active"]
    assert (Path(assistant.settings.data_dir) / "uploads" / "default" / "quillmoor.pdf"
            ).read_bytes() == good
    assert uploads_of(assistant) == ["quillmoor.pdf"]  # and nothing hidden left behind
    assert "Arvenson" in chat(c, QUILLMOOR_QUESTION)["answer"]
    # A good new version replaces it.
    r = upload(c, ("quillmoor.md", QUILLMOOR.replace(b"Arvenson", b"Brandt")),
               ("quillmoor.pdf", text_pdf([["The Quillmoor lighthouse is kept by the Brandt "
                                            "family."]])))
    assert [f["status"] for f in r.json()["files"]] == ["added", "updated"]
    assert "Arvenson" not in str(chat(c, QUILLMOOR_QUESTION))


def test_limits_are_413_and_store_nothing(admin: tuple[Any, TestClient]) -> None:
    assistant, c = admin
    state = assistant.index.state()
    r = upload(c, ("big.txt", b"word " * 5000))  # 25,000 bytes; the limit is 20,000
    assert r.status_code == 413 and "too large" in r.json()["error"]
    assert "Nothing was stored" in r.json()["error"]
    r = upload(c, *[(f"f{i}.md", QUILLMOOR) for i in range(4)])  # the limit is 3 files
    assert r.status_code == 413 and "Too many files" in r.json()["error"]
    r = c.post("/api/documents", content=b"x" * (3 * 20_000 + 70_000),
               headers={**AS_ADMIN, "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413
    r = c.post("/api/documents", json={"files": []}, headers=AS_ADMIN)
    assert r.status_code == 422 and "multipart/form-data" in r.json()["error"]
    assert assistant.index.state() == state and uploads_of(assistant) == []


def test_uploads_name_their_collection(admin: tuple[Any, TestClient]) -> None:
    assistant, c = admin
    r = upload(c, ("quillmoor.md", QUILLMOOR), collection="lights")
    assert r.status_code == 404 and "create=true" in r.json()["error"]
    assert upload(c, ("quillmoor.md", QUILLMOOR), collection="Bad Name",
                  create="true").status_code == 422
    r = upload(c, ("junk.pdf", b"junk"), collection="lights", create="true")
    assert r.status_code == 422 and "lights" not in assistant.collections(refresh=True)
    r = upload(c, ("quillmoor.md", QUILLMOOR), collection="lights", create="true")
    assert r.status_code == 200 and r.json()["collection"] == "lights"
    assert uploads_of(assistant, "lights") == ["quillmoor.md"]
    names = [x["name"] for x in c.get("/api/collections",
                                      headers={"Authorization": f"Bearer {CHAT_KEY}"}
                                      ).json()["collections"]]
    assert names == ["default", "ferries", "lights"]
    assert "Arvenson" in chat(c, QUILLMOOR_QUESTION, collection="lights")["answer"]
    assert chat(c, QUILLMOOR_QUESTION)["refused"] is True
    assert chat(c, FERRY_QUESTION, collection="lights")["refused"] is True
    r = upload(c, ("ferry-notes.md", QUILLMOOR.replace(b"Quillmoor", b"Saltholm")),
               collection="ferries")
    assert r.status_code == 200
    r = c.delete("/api/documents/quillmoor.md?collection=lights", headers=AS_ADMIN)
    assert r.status_code == 200 and uploads_of(assistant, "lights") == []
    assert chat(c, QUILLMOOR_QUESTION, collection="lights")["refused"] is True


def test_the_page_never_holds_the_admin_key(tmp_path: Path) -> None:
    """The Documents tab is on the page only with an admin key, and the key never is."""
    from assistant.server.app import make_app
    from assistant.settings import Settings

    from .fakes import FakeAssistant

    for admin_key in (ADMIN, ""):
        settings = Settings(data_dir=tmp_path, admin_key=admin_key)
        with TestClient(make_app(FakeAssistant(settings), settings), base_url=LOCAL) as c:
            page = c.get("/").text + c.get("/config").text
        assert ADMIN not in page
        assert ('"label": "Documents"' in page.replace('":"', '": "')) is bool(admin_key)
        assert ("api/documents" in page) is bool(admin_key)
