"""A section's outline as evidence: chunks keep the headings between them, an outline is
offered when the evidence spans a section's parts, and its citation quotes the document."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.answerers.generative import Candidate, build_messages, finalize, verify_messages
from assistant.chunking import MAX_BEFORE, chunk_document
from assistant.documents import load_document
from assistant.outline import heading_line, outline_for, parts
from assistant.server.docview import check_link, render_view
from assistant.sources import DocumentText, text_between

from .conftest import BROCHURE
from .test_generative import FakeModel, pick, slow

TOOLBOX = "Preventing conflicts › Cyber Diplomacy Toolbox"
MEASURES = ["Stability measures", "EU support to member states", "Cooperative measures",
            "Preventive measures", "Restrictive measures"]

LAW = """# A model law

## Title 1 – Offences

### Article 1 – Trespass

Entering land without leave is an offence.

### Article 2 – Damage

Damaging a fence is an offence. A second sentence follows.

### Article 3 – Theft

Taking crops is an offence.

## Title 2 – Courts

### Article 4 – Venue

Cases are heard locally.
"""


@pytest.fixture(scope="module")
def brochure():
    doc = load_document(BROCHURE, BROCHURE.name)
    return doc, chunk_document(doc)


def _law(tmp_path: Path, preamble: str = ""):
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "law.md"
    path.write_text(LAW.replace("## Title 1", preamble + "## Title 1"), encoding="utf-8")
    doc = load_document(path, "law.md")
    return doc, chunk_document(doc)


def _candidate(chunks, section: str, needle: str = "") -> Candidate:
    from assistant.types import Passage

    c = next(c for c in chunks if c.section == section and needle in c.text)
    p = Passage(id=c.id, document=c.document, title=c.title, section=c.section, text=c.text,
                start=c.start, end=c.end)
    return Candidate(p, 0, len(c.text))


def test_chunks_keep_the_text_before_them_and_rebuild_any_stretch(brochure) -> None:
    doc, chunks = brochure
    previous = doc.body_start
    for c in chunks:
        assert c.before == doc.text[previous:c.start]
        previous = c.end
    # Any stretch of the body, headings and all, comes back verbatim from the chunks.
    a = doc.text.index("### Cyber Diplomacy Toolbox")
    b = doc.text.index("## Protecting human rights")
    assert text_between(chunks, a, b) == doc.text[a:b]
    assert text_between(chunks, chunks[3].start + 2, chunks[3].end - 2) == \
        doc.text[chunks[3].start + 2:chunks[3].end - 2]
    # Past the last chunk, or over a gap too long to keep, nothing is made up.
    assert text_between(chunks, a, len(doc.text) + 10) is None
    cut = [c if i != 5 else type(c)(**{**c.__dict__, "before": ""})
           for i, c in enumerate(chunks)]
    assert chunks[5].before and text_between(cut, chunks[4].end - 1, chunks[5].start + 1) is None
    assert MAX_BEFORE >= 1000


def test_a_sections_parts_and_their_heading_lines(brochure, tmp_path: Path) -> None:
    doc, chunks = brochure
    assert [n.rsplit(" › ", 1)[-1] for n in parts(chunks, TOOLBOX)] == MEASURES
    line = heading_line(chunks, f"{TOOLBOX} › Stability measures")
    assert line is not None and doc.text[line[0]:line[1]] == "#### Stability measures"
    # A section with no text of its own (a treaty's title over its articles) has parts too.
    _, law_chunks = _law(tmp_path)
    names = parts(law_chunks, "Title 1 – Offences")
    assert [n.rsplit(" › ", 1)[-1] for n in names] == [
        "Article 1 – Trespass", "Article 2 – Damage", "Article 3 – Theft"]
    assert parts(law_chunks, "Title 1 – Offences › Article 1 – Trespass") == []


def test_the_outline_joins_when_the_evidence_spans_a_sections_parts(tmp_path: Path) -> None:
    law, chunks = _law(tmp_path)
    two = [_candidate(chunks, "Title 1 – Offences › Article 1 – Trespass"),
           _candidate(chunks, "Title 1 – Offences › Article 3 – Theft")]
    found = outline_for(two, lambda d: chunks)
    assert found is not None
    assert found.outline == ("Sections: Article 1 – Trespass; Article 2 – Damage; "
                             "Article 3 – Theft")
    cite = found.citation(3)
    assert law.text[cite.start:cite.end] == cite.text  # verbatim, headings included
    assert cite.text.startswith("### Article 1 – Trespass") and \
        cite.text.endswith("### Article 3 – Theft")
    # The document view finds and highlights it, though it runs over several chunks.
    view = DocumentText("law.md", "A model law", "", tuple(chunks))
    assert view.passage(cite.start, cite.end) == cite.text
    assert check_link(view, cite.start, cite.end, "", cite.text).span == (cite.start, cite.end)
    html = render_view(view, check_link(view, cite.start, cite.end, "", cite.text))
    # Articles 1 and 2 are highlighted, up to the heading of article 3 (not its text).
    assert html.count('<mark id="cite">') == 1 and html.count("<mark>") == 4
    for article in ("Article 1 – Trespass", "Article 2 – Damage", "Article 3 – Theft"):
        assert f"<mark>Title 1 – Offences › {article}</mark>" in html  # its headings too
    assert "<mark>Title 2" not in html
    assert "<mark>Damaging a fence" in html and "<mark>Taking crops" not in html
    # After an edit above it, the view finds the quote at its new place.
    moved = _law(tmp_path / "later", "Preamble added.\n\n")[1]
    later = DocumentText("law.md", "A model law", "", tuple(moved))
    shift = len("Preamble added.\n\n")
    assert later.find(cite.text) == (cite.start + shift, cite.end + shift)
    # One part of a section, or parts of different sections, is not a list of its parts.
    one = [_candidate(chunks, "Title 1 – Offences › Article 2 – Damage")]
    assert outline_for(one, lambda d: chunks) is None
    apart = [one[0], _candidate(chunks, "Title 2 – Courts › Article 4 – Venue")]
    assert outline_for(apart, lambda d: chunks) is None


def test_the_model_reads_the_outline_and_is_checked_against_it(brochure) -> None:
    doc, chunks = brochure
    cands = [_candidate(chunks, TOOLBOX, "five sets of measures"),
             _candidate(chunks, f"{TOOLBOX} › Cooperative measures")]
    found = outline_for(cands, lambda d: chunks)
    assert found is not None
    cands.append(found)
    prompt = build_messages("What are the five sets of measures?", cands)[-1]["content"]
    assert f"[3] Cyber Diplomacy Toolbox: Sections: {'; '.join(MEASURES)}" in prompt
    assert "####" not in prompt  # the model reads headings, not the quoted stretch
    answer = finalize("Evidence: 3\nAnswer: They are stability measures, EU support to member "
                      "states, cooperative, preventive and restrictive measures.", cands,
                      "local", question="What are the five sets of measures?")
    assert answer.grounding == "checked" and answer.citations[0].text == found.text
    assert doc.text[answer.citations[0].start:answer.citations[0].end] == found.text
    # A name no heading holds is still withheld.
    made_up = finalize("Evidence: 3\nAnswer: They include Cyber Shield measures.", cands,
                       "local", question="What are the five sets of measures?")
    assert made_up.refused
    # The self-check reads the outline too, not the long stretch it quotes.
    check = verify_messages("What are the five sets?", answer, cands)[-1]["content"]
    assert "Sections: Stability measures" in check and "Political statements" not in check


@slow
def test_the_core_shows_the_outline_and_cites_it_verbatim(make) -> None:
    model = FakeModel(pick("Sections:", "The five sets of measures are stability measures, "
                                        "EU support to member states, cooperative measures, "
                                        "preventive measures and restrictive measures."))
    assistant = make(model)
    answer = assistant.ask("What are the five sets of measures in the EU Cyber Diplomacy "
                           "Toolbox?")
    assert answer.grounding == "checked", answer.notes
    (cite,) = answer.citations
    assert cite.text.startswith("#### Stability measures")
    assert cite.text.endswith("#### Restrictive measures")
    view = assistant.document(cite.document)
    assert view is not None and view.passage(cite.start, cite.end) == cite.text
    # Turned off, the model is not shown it.
    off = FakeModel("Evidence: none")
    assistant = make(off)
    assistant.settings = assistant.settings.with_overrides(outlines=False)
    assistant.ask("What are the five sets of measures in the EU Cyber Diplomacy Toolbox?")
    assert "Sections:" not in off.prompts[0][-1]["content"]
