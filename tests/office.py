"""Small Word, PowerPoint and EPUB files, built by the tests themselves (no binary fixtures):
python-docx and python-pptx write the Office files, zipfile the EPUB."""

from __future__ import annotations

import zipfile
from pathlib import Path


def write_docx(path: Path, *, title: str = "Lighthouse Maintenance Manual",
               core_title: str = "") -> Path:
    """A report with a Title, two levels of headings, a list and a table."""
    import docx

    document = docx.Document()
    if core_title:
        document.core_properties.title = core_title
    document.add_paragraph(title, style="Title")
    document.add_paragraph("This manual describes how the coastal lighthouses are kept.")
    document.add_heading("Lamp inspection", level=1)
    document.add_paragraph(
        "The keeper inspects the main lamp every Tuesday at dawn. "
        "A spare bulb is stored in the lantern room.")
    document.add_heading("Cleaning the lens", level=2)
    document.add_paragraph("The Fresnel lens is polished with a soft chamois cloth.")
    document.add_paragraph("Never use vinegar on the brass fittings.", style="List Bullet")
    document.add_heading("Fuel stores", level=1)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Fuel"
    table.cell(0, 1).text = "Quantity"
    table.cell(1, 0).text = "Paraffin"
    table.cell(1, 1).text = "400 litres"
    document.add_paragraph("# not a heading, just a hash sign in the text")
    document.save(str(path))
    return path


def write_pptx(path: Path) -> Path:
    """A deck: a title slide, two content slides (one with a table), an untitled slide with
    speaker notes."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[0])  # title slide
    slide.shapes.title.text = "Orchard Harvest Review"
    slide.placeholders[1].text = "Season summary for the growers' cooperative"

    slide = deck.slides.add_slide(deck.slide_layouts[1])  # title and content
    slide.shapes.title.text = "Apple yields"
    body = slide.placeholders[1].text_frame
    body.text = "The Bramley orchard yielded 12 tonnes of apples this season."
    body.add_paragraph().text = "Frost in April damaged the Cox blossom."

    slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    slide.shapes.title.text = "Storage costs"
    rows = slide.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1)).table
    rows.cell(0, 0).text = "Cold store"
    rows.cell(0, 1).text = "Monthly cost"
    rows.cell(1, 0).text = "Barn B"
    rows.cell(1, 1).text = "900 pounds"

    slide = deck.slides.add_slide(deck.slide_layouts[6])  # blank: no title
    box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(6), Inches(1))
    box.text_frame.text = "Pear trees were planted along the north wall."
    slide.notes_slide.notes_text_frame.text = "Mention the new irrigation pump."
    deck.save(str(path))
    return path


_CONTAINER = """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles><rootfile full-path="OEBPS/content.opf"
    media-type="application/oebps-package+xml"/></rootfiles>
</container>"""

_OPF = """<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
    <dc:identifier id="id">urn:uuid:0000</dc:identifier>
    <dc:title>The Beekeeper's Year</dc:title>
    <dc:language>en</dc:language>
  </metadata>
  <manifest>
    <item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
    <item id="c1" href="text/chapter1.xhtml" media-type="application/xhtml+xml"/>
    <item id="c2" href="text/chapter%202.xhtml" media-type="application/xhtml+xml"/>
    <item id="css" href="style.css" media-type="text/css"/>
  </manifest>
  <spine><itemref idref="nav"/><itemref idref="c1"/><itemref idref="c2"/></spine>
</package>"""

_NAV = """<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">
<head><title>Contents</title></head><body>
<nav epub:type="toc"><ol>
  <li><a href="text/chapter1.xhtml">Spring inspection</a></li>
  <li><a href="text/chapter%202.xhtml">Harvesting honey</a></li>
</ol></nav></body></html>"""

_CHAPTER1 = """<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Chapter 1</title></head><body>
<h1>Spring inspection</h1>
<p>In March the beekeeper checks each hive for a laying queen.</p>
<h2>Feeding</h2>
<p>Weak colonies are fed a syrup of two parts sugar to one part water.</p>
</body></html>"""

# No heading of its own: the table of contents names it.
_CHAPTER2 = """<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Chapter 2</title></head><body>
<p>Honey is harvested in late August, when the frames are capped with wax.</p>
<p>An extractor spins the frames to release the honey.</p>
</body></html>"""


_NCX = """<?xml version="1.0" encoding="utf-8"?>
<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1"><navMap>
  <navPoint id="p1"><navLabel><text>Spring inspection</text></navLabel>
    <content src="text/chapter1.xhtml"/></navPoint>
  <navPoint id="p2"><navLabel><text>Harvesting honey</text></navLabel>
    <content src="text/chapter%202.xhtml#start"/></navPoint>
</navMap></ncx>"""


def write_epub(path: Path, *, epub2: bool = False, encrypted: bool = False) -> Path:
    """An EPUB 3 book (a navigation document and two chapters), or with `epub2` an EPUB 2
    book whose table of contents is an NCX file."""
    opf = _OPF
    if epub2:
        opf = opf.replace('version="3.0"', 'version="2.0"').replace(
            '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" '
            'properties="nav"/>',
            '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>').replace(
            '<spine><itemref idref="nav"/>', '<spine toc="ncx">')
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        zf.writestr("META-INF/container.xml", _CONTAINER)
        if encrypted:
            zf.writestr("META-INF/encryption.xml", (
                '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
                'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
                '<enc:CipherData><enc:CipherReference URI="OEBPS/text/chapter1.xhtml"/>'
                '</enc:CipherData></enc:EncryptedData></encryption>'))
        zf.writestr("OEBPS/content.opf", opf)
        zf.writestr("OEBPS/toc.ncx" if epub2 else "OEBPS/nav.xhtml", _NCX if epub2 else _NAV)
        zf.writestr("OEBPS/text/chapter1.xhtml", _CHAPTER1)
        zf.writestr("OEBPS/text/chapter 2.xhtml", _CHAPTER2)
        zf.writestr("OEBPS/style.css", "p { margin: 0 }")
    return path
