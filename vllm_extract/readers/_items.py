"""The values readers yield: ``Document``, ``BadInput`` and ``SkippedFile``.

Bad-input kinds (``BadInput.kind``), by where they arise:

    JSONL line       malformed_json, not_object, missing_text, text_not_string, empty_text,
                     not_utf8, line_too_long
    any file         unreadable, not_a_file (FIFO, socket, device), empty
    folder           symlink_loop (a link to a folder that holds it; a sibling alias is no error)
    text file        binary (a NUL byte anywhere), not_utf8
    PDF/DOCX/HTML    missing_extra (the ``docs`` extra is not installed), corrupt, encrypted,
                     too_large (DOCX part over the zip-bomb guard)
    PDF              no_text_layer (scanned pages, no text; OCR is out of scope)
    DOCX             not_a_zip (not a ZIP container: an old .doc, RTF or HTML renamed .docx)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BadInput", "Document", "InputItem", "Origin", "SkippedFile"]


@dataclass(frozen=True, slots=True)
class Document:
    """One document: its text and where it came from. ``index`` is its position in the input.

    ``pages``: for a converted file (PDF, DOCX, HTML), the character span ``(start, end)`` of each
    page in ``text``, end exclusive; page 1 is ``pages[0]``. Spans are in order and do not overlap;
    the text between two spans is a separator (``"\\n\\n"``); an empty page has ``start == end``.
    ``None`` for text files and JSONL lines (no pages).
    ``converted``: ``text`` was produced by conversion, so it is not the file's bytes: the record
    must carry it (entity offsets index into it).
    """

    id: str
    text: str
    source: str
    index: int
    metadata: dict[str, Any] = field(default_factory=dict)
    line: int | None = None
    pages: tuple[tuple[int, int], ...] | None = None
    converted: bool = False


@dataclass(frozen=True, slots=True)
class BadInput:
    """An input that could not become a document; it becomes an error record in the output.

    ``line_sha256``: for a JSONL line, the hex SHA-256 of its bytes as read (the final newline and an
    opening BOM excluded): a bad line has no text to hash, and ``--resume`` needs to notice when
    it changed. None for a file."""

    id: str
    source: str
    index: int
    kind: str
    message: str
    line: int | None = None
    line_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file inside an input folder that does not match the globs (listed, not processed)."""

    path: str


InputItem = Document | BadInput | SkippedFile


@dataclass(frozen=True, slots=True)
class Origin:
    """One file input: ``path`` opens it, ``name`` is its UTF-8-safe id and source, ``index`` its place."""

    path: str
    name: str
    index: int

    def bad(self, kind: str, message: str) -> BadInput:
        """A ``BadInput`` for this file."""
        return BadInput(self.name, self.name, self.index, kind, message)
