from pathlib import Path

import pytest

from assistant.documents import DocumentError, load_document


def _minimal_pdf(text: str) -> bytes:
    """A one-page PDF with a text layer, written by hand (no PDF writer needed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    trailer = b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
    out += trailer % (len(objects) + 1, xref)
    return bytes(out)


def test_markdown_html_text_and_pdf_are_read(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("---\ntitle: Alpha\n---\n# Heading\n\nBody text.\n")
    (tmp_path / "b.html").write_text(
        "<html><head><title>Beta</title><script>alert(1)</script></head>"
        "<body><h2>Part</h2><p>Para one.</p><ul><li>item</li></ul></body></html>"
    )
    (tmp_path / "c.txt").write_text("Plain words.\n")
    (tmp_path / "d.pdf").write_bytes(_minimal_pdf("Portable words here"))
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
        ("notes.docx", b"PK\x03\x04", "unsupported file type"),
    ],
)
def test_unusable_files_get_a_clear_error(tmp_path: Path, name: str, content: bytes,
                                          reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentError, match=reason):
        load_document(path)


def test_pdf_pages_are_recorded(tmp_path: Path) -> None:
    from .pdf import text_pdf

    path = tmp_path / "p.pdf"
    path.write_bytes(text_pdf([["First page words."], [], ["Third page words."]]))
    doc = load_document(path)
    assert len(doc.pages) == 3  # page n starts at pages[n-1]; the empty page where the next does
    assert doc.text[doc.pages[0]:].startswith("First page words.")
    assert doc.pages[1] == doc.pages[2] and doc.text[doc.pages[2]:].startswith("Third page")
    (tmp_path / "a.md").write_text("# A\n\nText.\n")
    assert load_document(tmp_path / "a.md").pages == []
