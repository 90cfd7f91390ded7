"""Word ``.docx`` files: body text in order, tables, footnotes and endnotes, page breaks.

Library: none beyond the standard library (``zipfile`` and ``xml.etree``). A DOCX is a ZIP of
WordprocessingML, and the reading we need is a walk over ``word/document.xml``: paragraphs and
tables in body order, runs, breaks, footnote references. python-docx (the usual choice) has no
footnote API (1.2), and we would walk its XML ourselves anyway; docx2python and mammoth re-render
the document for other purposes. Without a dependency, ``.docx`` always reads, with or without
the ``docs`` extra, and the test files can be written by python-docx, a different tool.

Text produced:
- one line per paragraph (an empty paragraph is a blank line); ``w:tab`` is a tab, ``w:br`` and
  ``w:cr`` a line break, a non-breaking hyphen ``-``, a soft hyphen nothing; NBSP (U+00A0,
  U+202F) becomes a space;
- a table row is one line, its cells joined by tabs (paragraphs inside a cell joined by spaces;
  a merged cell appears once);
- a footnote reference is written ``[1]`` (endnotes ``[i]``) where it stands, numbered in order
  of appearance as Word shows them, and the note's text follows as its own line, ``[1] text``,
  right after the paragraph or table row that refers to it (so it stays on that page);
- text boxes are read where they are anchored (the drawing's fallback copy is skipped); hidden
  (``w:vanish``), deleted (tracked ``w:del``) text and field codes are left out; headers, footers
  and comments are not read.

Pages: a DOCX has no fixed pages. When Word last saved the file it marked where its pages began
(``w:lastRenderedPageBreak``); if any such mark exists, those marks split pages. Otherwise pages
split at explicit page breaks, ``pageBreakBefore`` and section breaks that start a new page; a
file with none of these is one page.

Errors: ``not_a_zip`` (not a ZIP container: the message names what it looks like: an old
Word 97-2003 ``.doc``, RTF, HTML), ``encrypted`` (a password-protected Office file, or an
encrypted ZIP), ``corrupt`` (a broken ZIP, missing or malformed XML), ``too_large`` (an XML part
over 256 MiB uncompressed: the zip-bomb guard), ``empty`` (no text).
"""

from __future__ import annotations

import os
import zipfile
from typing import IO, Any
from xml.etree import ElementTree as ET

from ._files import file_metadata
from ._items import BadInput, Document, Origin
from .pages import assemble

__all__ = ["read_docx"]

_MAX_PART_BYTES = 256 * 1024 * 1024
_WORD = (
    "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "http://purl.oclc.org/ooxml/wordprocessingml/main",
)
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
_SKIP = frozenset({"rPr", "pPr", "tblPr", "trPr", "tcPr", "sectPr", "del", "moveFrom", "instrText", "delText",
                   "fldData", "footnoteRef", "endnoteRef", "sym", "softHyphen", "commentReference"})  # fmt: skip
_OFF = ("0", "false", "off")
_CLEAN = {0xA0: " ", 0x202F: " ", 0xAD: None, **{c: None for c in range(32) if c not in (9, 10)}}
_PAGE = None  # marker in a run buffer: a page starts here


class _Unreadable(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def read_docx(origin: Origin, st: os.stat_result) -> Document | BadInput:
    """Read one DOCX; a ``Document`` with ``pages`` and ``converted=True``, or a ``BadInput``."""
    try:
        with open(origin.path, "rb") as stream:
            if not zipfile.is_zipfile(stream):
                stream.seek(0)
                kind, what = _not_zip(stream)
                return origin.bad(kind, f"{origin.name} {what}")
            stream.seek(0)
            with zipfile.ZipFile(stream) as package:
                pages, title = _read_package(package)
    except _Unreadable as exc:
        return origin.bad(exc.kind, f"{origin.name}: {exc}")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ET.ParseError, KeyError, EOFError) as exc:
        return origin.bad("corrupt", f"{origin.name} is a damaged DOCX: {type(exc).__name__}: {exc}")
    except RuntimeError as exc:  # zipfile: "File ... is encrypted, password required"
        if "encrypted" in str(exc):
            return origin.bad("encrypted", f"{origin.name} is an encrypted ZIP (a password is needed)")
        raise
    built = assemble(pages)
    if not built.text.strip():
        return origin.bad("empty", f"{origin.name} has no text")
    metadata: dict[str, Any] = {"title": title, "page_count": len(built.pages), **file_metadata(st)}
    return Document(origin.name, built.text, origin.name, origin.index, metadata, pages=built.pages, converted=True)


def _not_zip(stream: IO[bytes]) -> tuple[str, str]:
    head = stream.read(8)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        stream.seek(0)
        if "EncryptedPackage".encode("utf-16-le") in stream.read(1 << 20):
            return "encrypted", "is a password-protected Office file (encrypted): remove the password in Word"
        return "not_a_zip", "is not a ZIP container but an OLE2 file: an old Word 97-2003 .doc? Save it as .docx"
    if head.startswith(b"{\\rtf"):
        return "not_a_zip", "is not a ZIP container but RTF: save it as .docx"
    if head.lstrip().startswith(b"<"):
        return "not_a_zip", "is not a ZIP container but HTML or XML: rename it to .html, or save it as .docx"
    return "not_a_zip", "is not a ZIP container, so not a DOCX (damaged, or another format renamed)"


def _part(package: zipfile.ZipFile, name: str) -> bytes:
    info = package.getinfo(name)
    if info.file_size > _MAX_PART_BYTES:
        raise _Unreadable("too_large", f"{name} is {info.file_size} bytes uncompressed, over the 256 MiB guard")
    data = package.read(info)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise _Unreadable("corrupt", f"{name} declares a DOCTYPE/entities, which WordprocessingML never does")
    return data


def _relations(package: zipfile.ZipFile, part: str) -> dict[str, str]:
    """``{type suffix: part name}`` from the relationships of ``part`` ("" for the package)."""
    folder, _, base = part.rpartition("/")
    rels_name = f"{folder + '/' if folder else ''}_rels/{base}.rels"
    if rels_name not in package.NameToInfo:
        return {}
    found: dict[str, str] = {}
    for rel in ET.fromstring(_part(package, rels_name)).iter(_RELS):
        if rel.get("TargetMode") == "External":
            continue
        target = rel.get("Target", "")
        name = target.lstrip("/") if target.startswith("/") else _join(folder, target)
        found.setdefault(rel.get("Type", "").rpartition("/")[2], name)
    return found


def _join(folder: str, target: str) -> str:
    parts = folder.split("/") if folder else []
    for piece in target.split("/"):
        if piece == "..":
            if parts:
                parts.pop()
        elif piece not in ("", "."):
            parts.append(piece)
    return "/".join(parts)


def _read_package(package: zipfile.ZipFile) -> tuple[list[list[str]], str | None]:
    top = _relations(package, "")
    main = top.get("officeDocument", "word/document.xml")
    if main not in package.NameToInfo:
        raise _Unreadable("corrupt", f"no main document part ({main}): not a Word document?")
    data = _part(package, main)
    related = _relations(package, main)
    notes = {
        kind: _notes(package, related[kind + "s"], kind) for kind in ("footnote", "endnote") if kind + "s" in related
    }
    body = next((el for el in ET.fromstring(data) if _w(el) == "body"), None)
    if body is None:
        raise _Unreadable("corrupt", f"{main} has no body")
    walker = _Walker(notes, rendered=b"lastRenderedPageBreak" in data)
    walker.blocks(body)
    while len(walker.pages) > 1 and not any(walker.pages[-1]):
        walker.pages.pop()  # a section break at the very end starts no page
    return walker.pages, _title(package, top.get("core-properties"))


def _title(package: zipfile.ZipFile, core: str | None) -> str | None:
    if not core or core not in package.NameToInfo:
        return None
    try:
        element = ET.fromstring(_part(package, core)).find(_DC_TITLE)
    except (ET.ParseError, _Unreadable):
        return None
    if element is None:
        return None
    return (element.text or "").strip() or None


def _notes(package: zipfile.ZipFile, part: str, kind: str) -> dict[str, str]:
    if part not in package.NameToInfo:
        return {}
    found: dict[str, str] = {}
    for note in ET.fromstring(_part(package, part)):
        if _w(note) != kind or _attr(note, "type") not in (None, "normal"):
            continue
        buffer: list[str | None] = []
        _Walker({}, rendered=False).inline(note, buffer, " ")
        found[_attr(note, "id") or ""] = _clean("".join(s for s in buffer if s)).strip()
    return found


def _w(el: ET.Element) -> str | None:
    """The local name of a WordprocessingML element, None for other namespaces."""
    ns, _, local = el.tag[1:].partition("}")
    return local if ns in _WORD else None


def _attr(el: ET.Element, name: str) -> str | None:
    for ns in _WORD:
        value = el.get(f"{{{ns}}}{name}")
        if value is not None:
            return value
    return None


def _on(el: ET.Element | None) -> bool:
    """A WordprocessingML on/off property: present and not switched off."""
    return el is not None and (_attr(el, "val") or "true").lower() not in _OFF


def _child(el: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in el if _w(c) == name), None)


def _clean(text: str) -> str:
    return text.translate(_CLEAN)


def _roman(number: int) -> str:
    out = ""
    for value, letters in ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"), (50, "l"),
                           (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")):  # fmt: skip
        while number >= value:
            out += letters
            number -= value
    return out


class _Walker:
    """Walks a body, collecting lines page by page."""

    def __init__(self, notes: dict[str, dict[str, str]], *, rendered: bool) -> None:
        self.pages: list[list[str]] = [[]]
        self.notes = notes
        self.rendered = rendered
        self.numbers = {"footnote": 0, "endnote": 0}
        self.queued: list[str] = []

    def blocks(self, parent: ET.Element) -> None:
        for el in parent:
            name = _w(el)
            if name == "p":
                self.paragraph(el)
            elif name == "tbl":
                self.table(el)
            elif name in ("sdt", "sdtContent", "customXml", "ins", "moveTo"):
                self.blocks(el)
            elif el.tag == f"{_MC}AlternateContent":
                choice = next((c for c in el if c.tag == f"{_MC}Choice"), None)
                if choice is not None:
                    self.blocks(choice)

    def paragraph(self, p: ET.Element) -> None:
        props = _child(p, "pPr")
        if props is not None and not self.rendered and _on(_child(props, "pageBreakBefore")):
            self.new_page()
        buffer: list[str | None] = []
        self.inline(p, buffer, "\n")
        self.emit(buffer)
        section = _child(props, "sectPr") if props is not None else None
        if section is not None and not self.rendered:
            kind = _child(section, "type")
            if kind is None or _attr(kind, "val") != "continuous":
                self.new_page()

    def table(self, tbl: ET.Element) -> None:
        for row in self._children(tbl, "tr"):
            cells: list[str] = []
            page_break = False
            for cell in self._children(row, "tc"):
                buffer: list[str | None] = []
                self.inline(cell, buffer, " ")
                page_break = page_break or _PAGE in buffer
                cells.append(_clean("".join(s for s in buffer if s)).strip())
            self.pages[-1].append("\t".join(cells))
            self.flush_notes()
            if page_break:
                self.new_page()

    def _children(self, el: ET.Element, tag: str) -> list[ET.Element]:
        """The ``w:{tag}`` children of ``el`` (rows of a table, cells of a row), looking through
        content controls and custom XML that wrap them."""
        found: list[ET.Element] = []
        for child in el:
            name = _w(child)
            if name == tag:
                found.append(child)
            elif name in ("sdt", "sdtContent", "customXml"):
                found.extend(self._children(child, tag))
        return found

    def inline(self, el: ET.Element, out: list[str | None], paragraph_sep: str) -> None:
        """Append the text under ``el`` to ``out`` (``_PAGE`` where a page starts)."""
        for child in el:
            if child.tag == f"{_MC}AlternateContent":
                choice = next((c for c in child if c.tag == f"{_MC}Choice"), None)
                if choice is not None:
                    self.inline(choice, out, paragraph_sep)
                continue
            name = _w(child)
            if name in _SKIP:
                continue
            if name == "r":
                props = _child(child, "rPr")
                if props is None or not _on(_child(props, "vanish")):
                    self.inline(child, out, paragraph_sep)
            elif name == "t":
                out.append(child.text or "")
            elif name in ("tab", "ptab"):
                out.append("\t")
            elif name == "cr":
                out.append("\n")
            elif name == "br":
                kind = _attr(child, "type")
                if kind == "page":
                    if not self.rendered:
                        out.append(_PAGE)
                else:
                    out.append("\n")
            elif name == "lastRenderedPageBreak":
                if self.rendered:
                    out.append(_PAGE)
            elif name == "noBreakHyphen":
                out.append("-")
            elif name in ("footnoteReference", "endnoteReference"):
                out.append(self.note(name[: -len("Reference")], _attr(child, "id") or ""))
            elif name == "p":  # inside a cell, note or text box
                if out and out[-1] != paragraph_sep:
                    out.append(paragraph_sep)
                self.inline(child, out, paragraph_sep)
                out.append(paragraph_sep)
            else:
                self.inline(child, out, paragraph_sep)

    def note(self, kind: str, note_id: str) -> str:
        self.numbers[kind] += 1
        number = self.numbers[kind]
        mark = f"[{number}]" if kind == "footnote" else f"[{_roman(number)}]"
        text = self.notes.get(kind, {}).get(note_id)
        if text:
            self.queued.append(f"{mark} {text}")
        return mark

    def emit(self, buffer: list[str | None]) -> None:
        line: list[str] = []
        for piece in buffer:
            if piece is _PAGE:
                if any(line):
                    self.pages[-1].append(_clean("".join(line)))
                line = []
                self.new_page()
            else:
                line.append(piece)
        self.pages[-1].append(_clean("".join(line)))
        self.flush_notes()

    def flush_notes(self) -> None:
        self.pages[-1].extend(self.queued)
        self.queued.clear()

    def new_page(self) -> None:
        self.pages.append([])
