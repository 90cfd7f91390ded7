"""Writers for reader tests: real files made by other tools than the readers.

PDFs come from fpdf2 (the reader is PDFium), DOCX files from python-docx (the reader walks the
XML with the standard library). python-docx has no footnote API, so ``add_footnote`` adds the
footnotes part through python-docx's own package objects, as Word lays it out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def new_pdf(*, unicode_font: bool = False) -> Any:
    """An A4 fpdf2 document with one font set at 11 pt (DejaVu Sans when ``unicode_font``)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    if unicode_font:
        pdf.add_font("DejaVu", fname=str(DEJAVU))
        pdf.set_font("DejaVu", size=11)
    else:
        pdf.set_font("Helvetica", size=11)
    return pdf


def has_unicode_font() -> bool:
    return DEJAVU.is_file()


def new_docx() -> Any:
    import docx

    return docx.Document()


_FOOTNOTES_XML = (
    f'<w:footnotes xmlns:w="{W_NS}">'
    '<w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>'
    '<w:footnote w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/></w:r></w:p>'
    "</w:footnote>{notes}</w:footnotes>"
)


def add_footnotes(document: Any, paragraph: Any, notes: list[str]) -> None:
    """Append a footnote reference run to ``paragraph`` for each note, and the footnotes part."""
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    bodies = []
    for number, note in enumerate(notes, start=1):
        run = OxmlElement("w:r")
        ref = OxmlElement("w:footnoteReference")
        ref.set(qn("w:id"), str(number))
        run.append(ref)
        paragraph._p.append(run)
        bodies.append(
            f'<w:footnote w:id="{number}"><w:p><w:r><w:footnoteRef/></w:r>'
            f'<w:r><w:t xml:space="preserve"> {note}</w:t></w:r></w:p></w:footnote>'
        )
    blob = _FOOTNOTES_XML.format(notes="".join(bodies)).encode()
    part = Part(
        PackURI("/word/footnotes.xml"),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml",
        blob,
        document.part.package,
    )
    document.part.relate_to(part, RT.FOOTNOTES)


def set_mtime(path: Path, when: float = 1_700_000_000.0) -> None:
    os.utime(path, (when, when))
