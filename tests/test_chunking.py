from pathlib import Path

from assistant.chunking import SECTION_SEP, chunk_document, sections
from assistant.documents import SourceDocument, load_document

from .conftest import BROCHURE


def doc(text: str, title: str = "Doc") -> SourceDocument:
    return SourceDocument(id="d.md", path=Path("d.md"), title=title, text=text, kind="markdown")


def test_chunks_are_verbatim_slices_with_heading_paths() -> None:
    d = load_document(BROCHURE)
    chunks = chunk_document(d)
    assert len(chunks) > 30
    for c in chunks:
        assert d.text[c.start : c.end] == c.text
        assert len(c.text) <= 900 or "\n" not in c.text.strip()
    port = [c for c in chunks if "NotPetya" in c.text]
    expected = f"Digital risks and the EU's responses{SECTION_SEP}Port security"
    assert port and port[0].section == expected


def test_front_matter_is_not_chunked_and_gives_the_title() -> None:
    d = load_document(BROCHURE)
    assert d.title == "Cyber Diplomacy in the European Union"
    assert all("isbn" not in c.text.lower() or "ISBN 978" in c.text for c in chunk_document(d))
    assert all(c.start >= d.body_start for c in chunk_document(d))


def test_a_list_under_a_heading_stays_with_its_heading() -> None:
    d = load_document(BROCHURE)
    yaksha = [c for c in chunk_document(d) if c.section.endswith("YAKSHA")]
    assert len(yaksha) == 1
    assert "Brunei Darussalam" in yaksha[0].text and "Vietnam" in yaksha[0].text


def test_long_sections_split_at_paragraphs_and_never_cross_headings() -> None:
    para = "This sentence is about cyber norms and nothing else at all. " * 5
    text = "# Doc\n\n## A\n\n" + "\n\n".join([para] * 6) + "\n\n## B\n\nShort.\n"
    chunks = chunk_document(doc(text), limit=700)
    a = [c for c in chunks if c.section == "A"]
    assert len(a) >= 3 and all(len(c.text) <= 700 for c in a)
    assert [c.text for c in chunks if c.section == "B"] == ["Short."]
    assert sections(doc(text))[0][0] == "A"  # the lone title heading is not repeated


def test_ids_are_stable_and_content_based() -> None:
    text = "# T\n\n## S\n\nSame text.\n\n## R\n\nOther text.\n"
    first = [c.id for c in chunk_document(doc(text))]
    assert first == [c.id for c in chunk_document(doc(text))]
    changed = [c.id for c in chunk_document(doc(text.replace("Other", "Changed")))]
    assert changed[0] == first[0] and changed[1] != first[1]


def test_a_list_introduction_stays_with_its_list() -> None:
    para = "The harbour of Zork handles grain, timber and fish in every season. " * 2
    intro = "Its board has three duties:"
    items = "\n".join(f"- duty number {n}, written out at some length to fill a line"
                      for n in (1, 2, 3))
    text = f"# Doc\n\n## A\n\n{para.strip()}\n\n{intro}\n\n{items}\n"
    chunks = chunk_document(doc(text), limit=260)
    holder = next(c for c in chunks if "duty number 1" in c.text)
    assert holder.text.startswith(intro)
    assert not any(c.text.rstrip().endswith(":") for c in chunks)
    for c in chunks:
        assert text[c.start:c.end] == c.text
