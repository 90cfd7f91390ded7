"""PDF reading on real files written by fpdf2 (the reader is PDFium): order, hyphens, headers, pages, errors."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

pytest.importorskip("pypdfium2")
pytest.importorskip("fpdf")

from readers_writers import has_unicode_font, new_pdf, set_mtime

from vllm_extract.readers import BadInput, Document, iter_documents, page_of


def _read(path: Path) -> Document | BadInput:
    (item,) = iter_documents([str(path)])
    assert isinstance(item, Document | BadInput)
    return item


def _doc(path: Path) -> Document:
    item = _read(path)
    assert isinstance(item, Document), item
    return item


def _span(doc: Document, name: str, nth: int = 0) -> tuple[int, int]:
    """The offsets of the ``nth`` occurrence of ``name`` in the text, checked exact."""
    start = -1
    for _ in range(nth + 1):
        start = doc.text.index(name, start + 1)
    end = start + len(name)
    assert doc.text[start:end] == name
    return start, end


def test_two_column_page_reads_column_by_column(tmp_path: Path) -> None:
    pdf = new_pdf()
    pdf.add_page()
    pdf.text(70, 20, "Halvorsen v. Nordlys AS - Opinion")
    left = ["The appeal concerns a supply", "contract signed by Ingrid", "Halvorsen in Oslo in 2019."]
    right = ["The second column holds", "the reasons given by Judge", "Per Olsen for the court."]
    y = 40
    for one, two in zip(left, right, strict=True):  # the stream interleaves the columns line by line
        pdf.text(20, y, one)
        pdf.text(110, y, two)
        y += 6
    path = tmp_path / "two-column.pdf"
    pdf.output(str(path))
    doc = _doc(path)
    assert doc.text == "\n".join(["Halvorsen v. Nordlys AS - Opinion", "", *left, *right])
    start, _ = _span(doc, "Per Olsen")
    assert page_of(start, doc.pages) == 1
    assert doc.converted and doc.pages == ((0, len(doc.text)),)


def test_two_columns_whose_paragraph_gaps_line_up_still_read_by_column(tmp_path: Path) -> None:
    pdf = new_pdf()
    pdf.add_page()
    rows = [("Left one a", "Right one a"), ("Left one b", "Right one b"), None, ("Left two a", "Right two a")]
    y = 30.0
    for row in rows:
        if row is None:
            y += 12  # a paragraph gap in both columns at the same height
            continue
        pdf.text(20, y, row[0])
        pdf.text(110, y, row[1])
        y += 6
    path = tmp_path / "aligned.pdf"
    pdf.output(str(path))
    assert _doc(path).text == "Left one a\nLeft one b\n\nLeft two a\nRight one a\nRight one b\n\nRight two a"


def test_ruled_table_reads_row_by_row_with_tabs(tmp_path: Path) -> None:
    pdf = new_pdf()
    pdf.add_page()
    pdf.multi_cell(0, 6, "Schedule 1. The parties are listed below.")
    pdf.ln(4)
    with pdf.table(col_widths=(50, 40, 60)) as table:
        for cells in [
            ("Party", "Role", "City"),
            ("Ingrid Halvorsen", "Seller", "Oslo"),
            ("Per Olsen", "Buyer", "Bergen"),
        ]:
            row = table.row()
            for cell in cells:
                row.cell(cell)
    pdf.ln(4)
    pdf.multi_cell(0, 6, "Signed in Oslo.")
    path = tmp_path / "table.pdf"
    pdf.output(str(path))
    doc = _doc(path)
    assert doc.text == (
        "Schedule 1. The parties are listed below.\n\n"
        "Party\tRole\tCity\nIngrid Halvorsen\tSeller\tOslo\nPer Olsen\tBuyer\tBergen\n\n"
        "Signed in Oslo."
    )
    _span(doc, "Ingrid Halvorsen")


def test_hyphenated_names_are_joined(tmp_path: Path) -> None:
    pdf = new_pdf()
    pdf.add_page()
    pdf.multi_cell(
        70,
        6,
        "The contract was signed by Ingrid Halvor-\nsen and by John Smith-\nJones, a well-\nknown trader, in Oslo.",
        align="L",
    )
    path = tmp_path / "hyphens.pdf"
    pdf.output(str(path))
    doc = _doc(path)
    # Lines as wrapped: "...by Ingrid" / "Halvor-" / "sen and by John Smith-" / "Jones, a well-" / "known ..."
    assert (
        doc.text == "The contract was signed by Ingrid\nHalvorsen and by John Smith-Jones, a wellknown trader, in Oslo."
    )
    _span(doc, "Halvorsen")
    _span(doc, "John Smith-Jones")


def test_name_hyphenated_across_a_page_break_counts_on_its_first_page(tmp_path: Path) -> None:
    pdf = new_pdf()
    pdf.add_page()
    pdf.text(20, 30, "The goods were received by Ingrid Halvor-")
    pdf.add_page()
    pdf.text(20, 30, "sen, the buyer, on 3 May.")
    path = tmp_path / "across.pdf"
    pdf.output(str(path))
    doc = _doc(path)
    assert doc.text == "The goods were received by Ingrid Halvorsen,\n\nthe buyer, on 3 May."
    start, end = _span(doc, "Ingrid Halvorsen")
    assert page_of(start, doc.pages) == page_of(end - 1, doc.pages) == 1
    assert page_of(doc.text.index("buyer"), doc.pages) == 2
    assert doc.pages == ((0, 44), (46, 66))


def test_running_header_and_footer_are_dropped_and_pages_right(tmp_path: Path) -> None:
    pdf = new_pdf()
    bodies = [
        "Article 1. Ingrid Halvorsen sells the goods.",
        "Article 2. Per Olsen pays within thirty days.",
        "Article 3. Kari Nordmann witnesses the deal.",
    ]
    for number, body in enumerate(bodies, start=1):
        pdf.add_page()
        pdf.text(20, 12, "NORDLYS AS - SUPPLY AGREEMENT - CONFIDENTIAL")
        pdf.text(20, 40, body)
        pdf.text(95, 287, f"Page {number} of 3")
    path = tmp_path / "headers.pdf"
    pdf.output(str(path))
    set_mtime(path)
    doc = _doc(path)
    assert doc.text == "\n\n".join(bodies)
    assert doc.metadata == {
        "title": None,
        "page_count": 3,
        "file_size": path.stat().st_size,
        "modified": "2023-11-14T22:13:20Z",
        "running_lines": ["NORDLYS AS - SUPPLY AGREEMENT - CONFIDENTIAL", "Page 1 of 3"],
    }
    for page, name in enumerate(["Ingrid Halvorsen", "Per Olsen", "Kari Nordmann"], start=1):
        start, end = _span(doc, name)
        assert page_of(start, doc.pages) == page
        assert doc.pages[page - 1][0] <= start < end <= doc.pages[page - 1][1]


def test_title_from_the_pdf_info(tmp_path: Path) -> None:
    pdf = new_pdf()
    pdf.set_title("Supply Agreement")
    pdf.add_page()
    pdf.text(20, 30, "Body text.")
    path = tmp_path / "titled.pdf"
    pdf.output(str(path))
    assert _doc(path).metadata["title"] == "Supply Agreement"


@pytest.mark.skipif(not has_unicode_font(), reason="needs DejaVu Sans (fonts-dejavu-core)")
def test_non_latin_text(tmp_path: Path) -> None:
    pdf = new_pdf(unicode_font=True)
    pdf.add_page()
    lines = ["Договор подписал Иван Петров в Москве.", "Ο Γιώργος Παπαδόπουλος υπέγραψε.", "Zoë Müller, Łódź."]
    for i, line in enumerate(lines):
        pdf.text(20, 30 + 8 * i, line)
    path = tmp_path / "non-latin.pdf"
    pdf.output(str(path))
    doc = _doc(path)
    assert doc.text == "\n".join(lines)
    for name in ("Иван Петров", "Γιώργος Παπαδόπουλος", "Zoë Müller", "Łódź"):
        start, _ = _span(doc, name)
        assert page_of(start, doc.pages) == 1


def test_encrypted_pdf_is_an_encrypted_bad_input(tmp_path: Path) -> None:
    pdf = new_pdf()
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.add_page()
    pdf.text(20, 30, "Secret text of Ingrid Halvorsen.")
    path = tmp_path / "locked.pdf"
    pdf.output(str(path))
    bad = _read(path)
    assert isinstance(bad, BadInput)
    assert (bad.kind, bad.id, bad.index) == ("encrypted", str(path), 0)
    assert "password" in bad.message


def test_pdf_encrypted_with_an_empty_user_password_reads(tmp_path: Path) -> None:
    pdf = new_pdf()
    pdf.set_encryption(owner_password="owner")  # restrictions only: anyone may open it
    pdf.add_page()
    pdf.text(20, 30, "Open text of Ingrid Halvorsen.")
    path = tmp_path / "restricted.pdf"
    pdf.output(str(path))
    assert _doc(path).text == "Open text of Ingrid Halvorsen."


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"<html><body>not a pdf</body></html>", "not a PDF"),
        (b"%PDF-1.7\n" + bytes(range(256)) * 8, "cannot be read as PDF"),
    ],
)
def test_corrupt_pdf_is_a_corrupt_bad_input_and_the_run_goes_on(tmp_path: Path, data: bytes, words: str) -> None:
    (tmp_path / "a-bad.pdf").write_bytes(data)
    (tmp_path / "b-good.txt").write_text("fine", encoding="utf-8")
    bad, good = iter_documents([str(tmp_path)])
    assert isinstance(bad, BadInput) and bad.kind == "corrupt" and words in bad.message
    assert isinstance(good, Document) and good.index == 1


def test_truncated_pdf_is_never_an_exception(tmp_path: Path) -> None:
    pdf = new_pdf()
    pdf.add_page()
    pdf.text(20, 30, "Text before the cut.")
    data = bytes(pdf.output())
    path = tmp_path / "cut.pdf"
    path.write_bytes(data[: len(data) // 2])
    item = _read(path)  # PDFium may repair it; either way one item, no exception
    assert isinstance(item, Document) or item.kind in {"corrupt", "empty"}


def _scan_image() -> io.BytesIO:
    from PIL import Image, ImageDraw

    image = Image.new("L", (600, 200), 255)
    ImageDraw.Draw(image).rectangle((40, 40, 560, 160), outline=0, width=6)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def test_scanned_pdf_has_no_text_layer_and_names_its_pages(tmp_path: Path) -> None:
    pdf = new_pdf()
    for _ in range(2):
        pdf.add_page()
        pdf.image(_scan_image(), x=10, y=10, w=190)
    path = tmp_path / "scan.pdf"
    pdf.output(str(path))
    bad = _read(path)
    assert isinstance(bad, BadInput) and bad.kind == "no_text_layer"
    assert "pages 1, 2" in bad.message and "OCR is out of scope" in bad.message


def test_scanned_page_among_text_pages_is_an_empty_page(tmp_path: Path) -> None:
    pdf = new_pdf()
    pdf.add_page()
    pdf.text(20, 30, "Page one names Ingrid Halvorsen.")
    pdf.add_page()
    pdf.image(_scan_image(), x=10, y=10, w=190)
    pdf.add_page()
    pdf.text(20, 30, "Page three names Per Olsen.")
    path = tmp_path / "mixed.pdf"
    pdf.output(str(path))
    doc = _doc(path)
    assert doc.text == "Page one names Ingrid Halvorsen.\n\nPage three names Per Olsen."
    assert doc.pages == ((0, 32), (34, 34), (34, 61))
    assert doc.metadata["pages_without_text"] == [2]
    assert page_of(_span(doc, "Per Olsen")[0], doc.pages) == 3


def test_blank_pdf_is_empty(tmp_path: Path) -> None:
    pdf = new_pdf()
    pdf.add_page()
    path = tmp_path / "blank.pdf"
    pdf.output(str(path))
    bad = _read(path)
    assert isinstance(bad, BadInput) and bad.kind == "empty"


def test_pdf_of_only_running_lines_is_empty(tmp_path: Path) -> None:
    pdf = new_pdf()
    for number in range(1, 4):
        pdf.add_page()
        pdf.text(20, 12, "DRAFT - NOT FOR FILING")
        pdf.text(95, 287, f"Page {number}")
    path = tmp_path / "chrome.pdf"
    pdf.output(str(path))
    bad = _read(path)
    assert isinstance(bad, BadInput) and bad.kind == "empty" and "running headers" in bad.message


def test_500_page_pdf_reads_page_by_page(tmp_path: Path) -> None:
    pdf = new_pdf()
    for number in range(1, 501):
        pdf.add_page()
        pdf.text(20, 30, f"Clause {number * 7} binds party P{number}.")
    path = tmp_path / "long.pdf"
    pdf.output(str(path))
    doc = _doc(path)
    assert doc.metadata["page_count"] == 500 and len(doc.pages) == 500
    start, _ = _span(doc, "party P437.")
    assert page_of(start, doc.pages) == 437
    assert doc.text[slice(*doc.pages[436])] == "Clause 3059 binds party P437."


def test_page_objects_are_closed_as_reading_goes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At most one page is open at a time (memory stays bounded on long files)."""
    import pypdfium2

    pdf = new_pdf()
    for number in range(1, 21):
        pdf.add_page()
        pdf.text(20, 30, f"Clause {number * 3} text.")
    path = tmp_path / "twenty.pdf"
    pdf.output(str(path))
    open_pages: list[int] = []
    most = 0
    original_get, original_close = pypdfium2.PdfDocument.get_page, pypdfium2.PdfPage.close

    def get_page(self: object, index: int) -> object:
        nonlocal most
        open_pages.append(index)
        most = max(most, len(open_pages))
        return original_get(self, index)

    def close(self: object) -> None:
        if open_pages:
            open_pages.pop()
        original_close(self)

    monkeypatch.setattr(pypdfium2.PdfDocument, "get_page", get_page)
    monkeypatch.setattr(pypdfium2.PdfPage, "close", close)
    assert _doc(path).metadata["page_count"] == 20
    assert most == 1 and open_pages == []


def test_without_the_docs_extra_a_pdf_is_a_bad_input_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm_extract.readers import pdf as pdf_reader

    monkeypatch.setattr(pdf_reader, "_pdfium", lambda: None)
    path = tmp_path / "any.pdf"
    path.write_bytes(b"%PDF-1.4\n")
    (tmp_path / "z.txt").write_text("still read", encoding="utf-8")
    bad, good = iter_documents([str(tmp_path)])
    assert isinstance(bad, BadInput) and bad.kind == "missing_extra"
    assert "pip install 'vllm-extract[docs]'" in bad.message
    assert isinstance(good, Document)


def test_pdf_in_a_folder_with_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    pdf = new_pdf()
    pdf.add_page()
    pdf.text(20, 30, "Named oddly.")
    folder = os.fsencode(tmp_path / "in")
    os.mkdir(folder)
    with open(os.path.join(folder, b"scan_\xff.pdf"), "wb") as stream:
        stream.write(bytes(pdf.output()))
    (doc,) = iter_documents([str(tmp_path / "in")])
    assert isinstance(doc, Document) and doc.text == "Named oddly."
    assert doc.id == str(tmp_path / "in") + "/scan_\\xff.pdf"
    doc.id.encode("utf-8")
