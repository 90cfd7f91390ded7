"""DOCX reading on real files written by python-docx (the reader walks the XML itself)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("docx")

from readers_writers import add_footnotes, new_docx, set_mtime

from vllm_extract.readers import BadInput, Document, iter_documents, page_of


def _read(path: Path) -> Document | BadInput:
    (item,) = iter_documents([str(path)])
    assert isinstance(item, Document | BadInput)
    return item


def _span(doc: Document, name: str) -> tuple[int, int]:
    start = doc.text.index(name)
    assert doc.text[start : start + len(name)] == name
    return start, start + len(name)


def _agreement() -> Any:
    document = new_docx()
    document.core_properties.title = "Supply Agreement"
    document.add_heading("Supply Agreement", 1)
    opening = document.add_paragraph("This agreement is made by Ingrid\u00a0Halvorsen, the Seller.")
    add_footnotes(document, opening, ["Ingrid Halvorsen signs for Nordlys AS.", "See annex B."])
    table = document.add_table(rows=3, cols=2)
    for r, cells in enumerate([("Party", "Role"), ("Per Olsen", "Buyer"), ("Kari Nordmann", "Witness")]):
        for c, value in enumerate(cells):
            table.cell(r, c).text = value
    document.add_page_break()
    document.add_paragraph("Signed in Oslo by Per Olsen.")
    return document


def test_docx_with_table_footnotes_and_a_page_break(tmp_path: Path) -> None:
    path = tmp_path / "agreement.docx"
    _agreement().save(str(path))
    set_mtime(path)
    doc = _read(path)
    assert isinstance(doc, Document) and doc.converted
    page_one = (
        "Supply Agreement\n"
        "This agreement is made by Ingrid Halvorsen, the Seller.[1][2]\n"
        "[1] Ingrid Halvorsen signs for Nordlys AS.\n"
        "[2] See annex B.\n"
        "Party\tRole\nPer Olsen\tBuyer\nKari Nordmann\tWitness"
    )
    assert doc.text == page_one + "\n\nSigned in Oslo by Per Olsen."
    assert doc.pages == ((0, len(page_one)), (len(page_one) + 2, len(doc.text)))
    assert doc.metadata == {
        "title": "Supply Agreement",
        "page_count": 2,
        "file_size": path.stat().st_size,
        "modified": "2023-11-14T22:13:20Z",
    }
    assert page_of(_span(doc, "Ingrid Halvorsen")[0], doc.pages) == 1
    assert page_of(_span(doc, "Kari Nordmann")[0], doc.pages) == 1
    assert page_of(doc.text.rindex("Per Olsen"), doc.pages) == 2


def test_pages_follow_words_own_page_marks_when_present(tmp_path: Path) -> None:
    from docx.oxml import OxmlElement

    document = new_docx()
    document.add_paragraph("First page text.")
    second = document.add_paragraph("Second page starts ")
    mark = OxmlElement("w:lastRenderedPageBreak")  # as Word saves it: where its layout began a page
    second.runs[0]._r.insert(0, mark)
    second.add_run("with Ingrid Halvorsen.")
    document.add_page_break()  # ignored when rendered marks exist: Word already marked that page too
    document.add_paragraph("Still page two by the marks.")
    path = tmp_path / "rendered.docx"
    document.save(str(path))
    doc = _read(path)
    assert isinstance(doc, Document)
    assert doc.text == "First page text.\n\nSecond page starts with Ingrid Halvorsen.\n\nStill page two by the marks."
    assert len(doc.pages) == 2
    assert page_of(_span(doc, "Ingrid Halvorsen")[0], doc.pages) == 2
    assert page_of(_span(doc, "Still")[0], doc.pages) == 2


def test_hidden_text_is_left_out(tmp_path: Path) -> None:
    document = new_docx()
    paragraph = document.add_paragraph("Visible ")
    paragraph.add_run("secret ").font.hidden = True
    paragraph.add_run("text.")
    path = tmp_path / "hidden.docx"
    document.save(str(path))
    doc = _read(path)
    assert isinstance(doc, Document) and doc.text == "Visible text."


def test_empty_docx_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.docx"
    new_docx().save(str(path))
    bad = _read(path)
    assert isinstance(bad, BadInput) and bad.kind == "empty"


@pytest.mark.parametrize(
    ("data", "kind", "words"),
    [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "not_a_zip", "Word 97-2003 .doc"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "EncryptedPackage".encode("utf-16-le"), "encrypted", "password"),
        (b"{\\rtf1\\ansi Hello}", "not_a_zip", "RTF"),
        (b"<html><body>Hello</body></html>", "not_a_zip", "HTML"),
        (b"plain words", "not_a_zip", "not a ZIP container"),
        (b"", "empty", "0 bytes"),  # empty, as any file of 0 bytes
    ],
)
def test_docx_that_is_not_a_zip(tmp_path: Path, data: bytes, kind: str, words: str) -> None:
    path = tmp_path / "letter.docx"
    path.write_bytes(data)
    (tmp_path / "z.txt").write_text("next", encoding="utf-8")
    bad, good = iter_documents([str(tmp_path)])
    assert isinstance(bad, BadInput) and bad.kind == kind and words in bad.message
    assert isinstance(good, Document) and good.index == 1


def _zip(path: Path, parts: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as package:
        for name, data in parts.items():
            package.writestr(name, data)
    return path


def test_corrupt_docx(tmp_path: Path) -> None:
    good = tmp_path / "good.docx"
    _agreement().save(str(good))
    data = good.read_bytes()
    cases = {
        "truncated.docx": data[: len(data) // 2],
        "no-main.docx": _zip(tmp_path / "x1", {"hello.txt": b"hi"}).read_bytes(),
        "bad-xml.docx": _zip(tmp_path / "x2", {"word/document.xml": b"<w:document><w:body"}).read_bytes(),
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        bad = _read(path)
        assert isinstance(bad, BadInput), name
        assert bad.kind in ("corrupt", "not_a_zip"), (name, bad)
        assert bad.kind == "corrupt" or name == "truncated.docx"


def test_docx_xml_with_entities_is_refused(tmp_path: Path) -> None:
    xml = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><w:document/>'
    path = _zip(tmp_path / "bomb.docx", {"word/document.xml": xml})
    bad = _read(path)
    assert isinstance(bad, BadInput) and bad.kind == "corrupt" and "DOCTYPE" in bad.message


def test_docx_part_over_the_size_guard_is_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm_extract.readers import docx as docx_reader

    path = tmp_path / "big.docx"
    _agreement().save(str(path))
    monkeypatch.setattr(docx_reader, "_MAX_PART_BYTES", 100)
    bad = _read(path)
    assert isinstance(bad, BadInput) and bad.kind == "too_large"


def test_docx_reads_without_the_docs_extra() -> None:
    """DOCX needs only the standard library."""
    import ast

    from vllm_extract.readers import docx as docx_reader

    tree = ast.parse(Path(docx_reader.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    assert imported <= {"__future__", "os", "zipfile", "typing", "xml"}
