"""Word, PowerPoint and EPUB files: read by content, structured by their headings, slides and
chapters, and damaged files refused with a reason. The files are built here (tests/office.py)."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from assistant import formats
from assistant.chunking import chunk_document
from assistant.documents import DocumentError, SourceDocument, load_document

from .office import write_docx, write_epub, write_pptx

if TYPE_CHECKING:
    from assistant.embeddings import Embedder


def _sections(doc: SourceDocument) -> dict[str, str]:
    """Heading path -> the section's chunk texts joined; every chunk a verbatim slice."""
    out: dict[str, str] = {}
    for c in chunk_document(doc):
        assert doc.text[c.start:c.end] == c.text
        out[c.section] = (out.get(c.section, "") + "\n" + c.text).strip()
    return out


def test_docx_headings_lists_and_tables(tmp_path: Path) -> None:
    doc = load_document(write_docx(tmp_path / "manual.docx"))
    assert doc.kind == "docx" and doc.title == "Lighthouse Maintenance Manual"
    sections = _sections(doc)
    assert set(sections) == {"", "Lamp inspection", "Lamp inspection › Cleaning the lens",
                             "Fuel stores"}
    assert "every Tuesday at dawn" in sections["Lamp inspection"]
    assert "- Never use vinegar" in sections["Lamp inspection › Cleaning the lens"]
    assert "Paraffin | 400 litres" in sections["Fuel stores"]
    # Body text that looks like a Markdown heading does not start a section.
    assert "\\# not a heading" in sections["Fuel stores"]


def test_docx_core_title_wins_and_placeholder_titles_do_not(tmp_path: Path) -> None:
    doc = load_document(write_docx(tmp_path / "a.docx", core_title="Keeper's Handbook"))
    assert doc.title == "Keeper's Handbook"
    # The Title paragraph then heads the text before the first heading.
    sections = _sections(doc)
    assert "coastal lighthouses" in sections["Lighthouse Maintenance Manual"]
    assert "Lamp inspection › Cleaning the lens" in sections
    assert formats.meaningful_title("PowerPoint Presentation") == ""


def test_pptx_one_section_per_slide(tmp_path: Path) -> None:
    from PIL import Image
    from pptx import Presentation
    from pptx.util import Inches

    path = write_pptx(tmp_path / "harvest.pptx")
    picture = tmp_path / "dot.png"
    Image.new("RGB", (4, 4), "red").save(picture)
    deck = Presentation(str(path))
    deck.slides[1].shapes.add_picture(str(picture), Inches(7), Inches(5))  # no caption is made
    deck.save(str(path))

    doc = load_document(path)
    assert doc.kind == "pptx" and doc.title == "Orchard Harvest Review"
    sections = _sections(doc)
    assert set(sections) == {"", "Apple yields", "Storage costs", "Slide 4",
                             "Slide 4 › Speaker notes"}
    assert "Season summary" in sections[""]  # the title slide: the deck's title is no path
    assert "12 tonnes" in sections["Apple yields"] and "Frost" in sections["Apple yields"]
    assert "Barn B | 900 pounds" in sections["Storage costs"]
    assert "Pear trees" in sections["Slide 4"]
    assert "irrigation pump" in sections["Slide 4 › Speaker notes"]


@pytest.mark.parametrize("epub2", [False, True])
def test_epub_chapters_in_reading_order(tmp_path: Path, epub2: bool) -> None:
    doc = load_document(write_epub(tmp_path / "bees.epub", epub2=epub2))
    assert doc.kind == "epub" and doc.title == "The Beekeeper's Year"
    sections = _sections(doc)
    # Chapter 2 has no heading of its own: the table of contents names it.
    assert list(sections) == ["Spring inspection", "Spring inspection › Feeding",
                              "Harvesting honey"]
    assert "laying queen" in sections["Spring inspection"]
    assert "late August" in sections["Harvesting honey"]
    assert "Contents" not in doc.text  # the navigation document is not a chapter


def test_formats_are_recognised_by_content_not_name(tmp_path: Path) -> None:
    write_docx(tmp_path / "a.docx")
    write_pptx(tmp_path / "b.pptx")
    write_epub(tmp_path / "c.epub")
    renamed = {
        "report": "a.docx",  # no extension
        "report.txt": "a.docx",  # a text extension
        "slides.docx": "b.pptx",  # the wrong Office extension
        "book.zip": "c.epub",
    }
    for name, source in renamed.items():
        shutil.copy(tmp_path / source, tmp_path / name)
    assert load_document(tmp_path / "report").kind == "docx"
    assert load_document(tmp_path / "report.txt").kind == "docx"
    assert load_document(tmp_path / "slides.docx").kind == "pptx"
    assert load_document(tmp_path / "book.zip").kind == "epub"


def test_office_owner_files_are_passed_over(tmp_path: Path) -> None:
    from assistant.documents import discover

    write_docx(tmp_path / "report.docx")
    (tmp_path / "~$report.docx").write_bytes(b"\x0bJane Doe" + b"\x00" * 100)  # Word, open
    found, problems = discover(tmp_path)
    assert [doc_id for _, doc_id in found] == ["report.docx"] and not problems


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _content_types(main: str) -> str:
    return ('<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            f'<Override PartName="/x/main.xml" ContentType="{main}"/></Types>')


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("notes.docx", b"PK\x03\x04", "not a valid Word document .* damaged zip"),
        ("notes.docx", b"Just some text, saved under the wrong name.\n",
         "not a valid Word document .*not a zip archive"),
        ("deck.pptx", _zip({"a.txt": "hello"}),
         "not a valid PowerPoint presentation .* not a Word, PowerPoint or EPUB"),
        ("book.epub", _zip({"mimetype": "application/epub+zip"}),
         "damaged or unreadable EPUB book"),
        ("old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "Office 97-2003"),
        ("sheet.xlsx", _zip({"[Content_Types].xml": _content_types(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml")}),
         "Excel workbook"),
        ("macros.docm", _zip({"[Content_Types].xml": _content_types(
            "application/vnd.ms-word.document.macroEnabled.main+xml")}), r"\.docm"),
        ("empty.docx", b"", "empty file"),
    ],
)
def test_damaged_and_unsupported_files_get_a_clear_error(tmp_path: Path, name: str,
                                                         content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentError, match=reason):
        load_document(path)


def test_truncated_office_files_and_epubs_are_refused(tmp_path: Path) -> None:
    for path in (write_docx(tmp_path / "a.docx"), write_pptx(tmp_path / "b.pptx"),
                 write_epub(tmp_path / "c.epub")):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(DocumentError, match=r"not a valid|damaged"):
            load_document(path)


def test_a_docx_whose_document_part_is_broken_xml_is_refused(tmp_path: Path) -> None:
    good = write_docx(tmp_path / "good.docx")
    bad = tmp_path / "bad.docx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "word/document.xml":
                data = data[: len(data) // 2]  # cut mid-element
            dst.writestr(info, data)
    with pytest.raises(DocumentError, match="damaged or unreadable Word document"):
        load_document(bad)


def test_drm_encrypted_epub_and_zip_bombs_are_refused(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DocumentError, match="encrypted"):
        load_document(write_epub(tmp_path / "locked.epub", encrypted=True))
    monkeypatch.setattr(formats, "MAX_UNZIPPED_BYTES", 1000)
    with pytest.raises(DocumentError, match="unpacks to"):
        load_document(write_docx(tmp_path / "big.docx"))


# -- end to end: real embedding model, embedded Chroma, extractive answers --------------------
QUESTIONS = [  # (file, question, words of the answer, section of its citation)
    ("manual.docx", "How often does the keeper inspect the main lamp?", "every Tuesday",
     "Lamp inspection"),
    ("harvest.pptx", "How many tonnes of apples did the Bramley orchard yield?", "12 tonnes",
     "Apple yields"),
    ("bees.epub", "When is honey harvested?", "late August", "Harvesting honey"),
]


@pytest.mark.slow
def test_office_files_and_epubs_are_answered_with_verbatim_citations(
        tmp_path: Path, embedder: Embedder) -> None:
    from assistant import Assistant, Settings

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_docx(corpus / "manual.docx")
    write_pptx(corpus / "harvest.pptx")
    write_epub(corpus / "bees.epub")
    (corpus / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    assistant = Assistant(Settings(data_dir=tmp_path / "data", corpus_dir=corpus,
                                   generator="extractive"), embedder=embedder)
    report = assistant.ingest()
    assert sorted(report.added) == ["bees.epub", "harvest.pptx", "manual.docx"]
    assert list(report.failures) == [str(corpus / "broken.docx")]
    assert "not a valid Word document" in report.failures[str(corpus / "broken.docx")]

    def check_answers() -> None:
        for name, question, words, section in QUESTIONS:
            answer = assistant.ask(question)
            assert not answer.refused and words in answer.answer, (question, answer.answer)
            text = load_document(corpus / name).text
            cited = [c for c in answer.citations if c.document == name]
            assert cited and any(c.section == section for c in cited), answer.citations
            for c in answer.citations:
                assert c.text and c.text in load_document(corpus / c.document).text
                if c.document == name:
                    assert text[c.start:c.end] == c.text

    check_answers()
    # A file that is damaged later keeps its previous version in the index, and the rest
    # of the index is untouched.
    good = (corpus / "manual.docx").read_bytes()
    (corpus / "manual.docx").write_bytes(good[: len(good) // 3])
    again = assistant.ingest()
    assert str(corpus / "manual.docx") in again.failures and not again.removed
    assert again.documents == 3 and not again.added and not again.updated
    (corpus / "manual.docx").write_bytes(good)
    check_answers()
