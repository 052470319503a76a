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
        # Longer only as one paragraph, or as a list held whole with its introduction.
        assert len(c.text) <= 900 or "\n" not in c.text.strip() or len(c.text) <= 1800
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


def test_a_list_stays_in_one_chunk_with_the_paragraph_that_introduces_it() -> None:
    intro = "Filler sentence number one goes here. " * 18  # pushes the list past one chunk
    items = "\n\n".join(f"({c}) measure {c} with a description of what it requires of "
                        "the entities concerned;" for c in "abcdefghij")
    text = f"# Article 21\n\n{intro.strip()}\n\nThe measures shall include:\n\n{items}\n"
    chunks = chunk_document(doc(text), limit=900)
    holding = [c for c in chunks if "(a) measure a" in c.text]
    assert len(holding) == 1
    assert holding[0].text.startswith("The measures shall include:")
    assert "(j) measure j" in holding[0].text
    assert all(text[c.start:c.end] == c.text for c in chunks)


def test_a_list_too_long_to_hold_whole_is_cut_like_prose() -> None:
    items = "\n\n".join(f"- item {i} " + "with many words " * 12 for i in range(20))
    chunks = chunk_document(doc(f"# A\n\nThe items:\n\n{items}\n"), limit=300)
    assert all(len(c.text) <= 300 for c in chunks)
