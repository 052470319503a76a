from pathlib import Path
from typing import Any

import pytest

from assistant.documents import DocumentError, load_document

from .pdf import text_pdf


def test_markdown_html_text_and_pdf_are_read(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("---\ntitle: Alpha\n---\n# Heading\n\nBody text.\n")
    (tmp_path / "b.html").write_text(
        "<html><head><title>Beta</title><script>alert(1)</script></head>"
        "<body><h2>Part</h2><p>Para one.</p><ul><li>item</li></ul></body></html>"
    )
    (tmp_path / "c.txt").write_text("Plain words.\n")
    (tmp_path / "d.pdf").write_bytes(text_pdf([["Portable words here"]]))
    a = load_document(tmp_path / "a.md")
    assert a.title == "Alpha" and a.text[a.body_start :].startswith("# Heading")
    b = load_document(tmp_path / "b.html")
    assert b.title == "Beta" and "## Part" in b.text and "- item" in b.text
    assert "alert" not in b.text
    assert load_document(tmp_path / "c.txt").title == "c"
    assert "Portable words here" in load_document(tmp_path / "d.pdf").text


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("blank.md", b"   \n\n", "no text"),
        ("binary.txt", b"\x00\x01\x02" * 100, "binary"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "PDF"),
        ("notes.rtf", b"{\\rtf1 Some words.}", "unsupported file type"),
        ("notes.docx", b"PK\x03\x04", "not a valid Word document"),
    ],
)
def test_unusable_files_get_a_clear_error(tmp_path: Path, name: str, content: bytes,
                                          reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentError, match=reason):
        load_document(path)


def test_pdf_pages_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "p.pdf"
    path.write_bytes(text_pdf([["First page words."], [], ["Third page words."]]))
    doc = load_document(path)
    assert len(doc.pages) == 3  # page n starts at pages[n-1]; the empty page where the next does
    assert doc.text[doc.pages[0]:].startswith("First page words.")
    assert doc.pages[1] == doc.pages[2] and doc.text[doc.pages[2]:].startswith("Third page")
    (tmp_path / "a.md").write_text("# A\n\nText.\n")
    assert load_document(tmp_path / "a.md").pages == []
def test_discover_reports_symlink_loops_broken_links_and_unreadable_folders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from assistant.documents import discover

    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text("# A\n\nText.\n")
    (root / "sub" / "b.md").write_text("# B\n\nText.\n")
    (root / "sub" / "up").symlink_to(root, target_is_directory=True)  # a loop through a folder
    (root / "self.md").symlink_to(root / "self.md")  # a link to itself
    (root / "gone.md").symlink_to(root / "missing.md")
    (root / "locked").mkdir()
    (root / "locked" / "c.md").write_text("# C\n\nText.\n")
    (root / "linked").symlink_to(root / "sub", target_is_directory=True)  # followed, no loop

    real_scandir = os.scandir

    def scandir(path: Any) -> Any:  # the tests run as root, whom permissions do not stop
        if Path(path) == root / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found, problems = discover(root)
    assert [doc_id for _, doc_id in found] == ["a.md", "linked/b.md", "sub/b.md"]
    assert problems == {
        str(root / "gone.md"): "broken symlink (its target does not exist); skipped",
        str(root / "linked" / "up"): "symlink loop (a link to a folder that holds it); skipped",
        str(root / "locked"): "cannot read folder (Permission denied); skipped",
        str(root / "self.md"): "symlink loop (the link leads back to itself); skipped",
        str(root / "sub" / "up"): "symlink loop (a link to a folder that holds it); skipped",
    }


@pytest.mark.slow
def test_ingest_reports_each_failure_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str],
                                          caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from assistant.cli import main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.md").write_text("# Good\n\nThe harbour of Zork has 12 cranes.\n")
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    (corpus / "loop.md").symlink_to(corpus / "loop.md")
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    with caplog.at_level(logging.INFO):
        assert main(["ingest", str(corpus)]) == 1
    err = capsys.readouterr().err
    for name, reason in (("broken.pdf", "unreadable PDF"), ("loop.md", "symlink loop")):
        lines = [line for line in err.splitlines() if name in line]
        assert len(lines) == 1 and lines[0].startswith("  failed: ") and reason in lines[0]
        # Logged below warning level, so a console log handler does not print it again.
        assert not [r for r in caplog.records
                    if r.levelno >= logging.WARNING and name in r.getMessage()]
