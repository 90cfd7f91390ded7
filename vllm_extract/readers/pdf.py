"""PDF files: the text layer, page by page, in reading order, with page spans.

Library: pypdfium2, the maintained binding of PDFium (the PDF engine of Chrome), installed by the
``docs`` extra. Why: it is fast (C++; hundreds of pages a second here, where the pure-Python
pdfminer.six is an order of magnitude slower on a 500-page filing), tolerant of damaged files,
decodes the font encodings real filings use (ToUnicode, CID fonts), opens files with an empty
user password, reports a password-protected file as such, and gives each character's box, which
is what reading order needs. Wheels for every platform: no system packages.

Memory: the file is read through a file object; one page (and its text page) is open at a time
and closed before the next, so a 500-page PDF holds one page's objects plus the text so far.
PDFium is not thread-safe: read PDFs from one thread at a time.

Reading order. PDFium's own text order goes line by line across the page, so it would interleave
the two columns of a two-column page. Characters are grouped into segments (runs on one line
with no gap wider than 0.6 line heights), and segments are ordered by a recursive XY-cut:

- a region splits into columns at its widest vertical gap of at least 0.85 line heights (about
  one em) that no segment crosses, when the two sides sit side by side (their vertical ranges
  overlap) and one side has more than one line; columns are read left to right, each completely;
- a region splits into bands at its widest horizontal gaps, read top to bottom; a gap of at
  least 0.8 line heights is a paragraph break (a blank line);
- when both splits exist, columns win if they start level (within a line height) or if no band
  gap is a paragraph gap; otherwise the bands win (a title above two columns is read first);
- a region that splits no further is one line: its segments left to right, joined by a space,
  or by a tab where a drawn cell border runs through the gap or the gap is over 3 line heights.

Tables: a gap crossed by two or more horizontal rules (a ruled table's borders) is not a column
gap, so a ruled table reads row by row, cells separated by tabs. A table without rules reads
like a multi-column page: column by column.

Text clean-up (the text written is the text stored): PDFium line ends become ``\\n``, ligatures
(U+FB00-FB06) are spelled out, control characters are dropped. Line-end hyphens and running
headers/footers follow the rules in ``pages``.

Errors: ``encrypted`` (a password is needed), ``corrupt`` (PDFium cannot parse it, or it is not
a PDF), ``no_text_layer`` (no page has text and some have images: scanned; OCR is out of scope),
``empty`` (no text and no images), ``missing_extra``. A document whose text pages are fine keeps
its scanned pages as empty spans and lists them in ``metadata["pages_without_text"]``.
"""

from __future__ import annotations

import functools
import os
import re
import statistics
from types import ModuleType
from typing import Any

from ._files import DOCS_EXTRA_HINT, file_metadata
from ._items import BadInput, Document, Origin
from .pages import assemble
from .text import is_blank

__all__ = ["read_pdf"]

_SEGMENT_GAP = 0.6  # line heights: a wider gap inside a line starts a new segment
_GUTTER = 0.85  # line heights: the narrowest column gap
_PARAGRAPH_GAP = 0.8  # line heights: a wider vertical gap is a paragraph break
_TAB_GAP = 3.0  # line heights: a wider gap inside a line is a tab even without a cell border
_SAME_LINE = 0.35  # line heights: how far a character's centre may sit from its segment's centre
_HYPHEN_MARKS = ("\x02", "\ufffe")  # how PDFium marks a hyphen it saw at a line end
_WORD = re.compile("[\x02\ufffe]|[^\\s\x02\ufffe]+")
_LIGATURES = {0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi", 0xFB04: "ffl", 0xFB05: "st", 0xFB06: "st"}
_CLEAN: dict[int, str | None] = {
    **dict.fromkeys([*range(32), *range(0x7F, 0xA0), 0xFFFF], None),
    **dict.fromkeys(range(0xD800, 0xE000), None),
    **_LIGATURES,
}
_PASSWORD_ERRORS = (4, 6)  # FPDF_ERR_PASSWORD, FPDF_ERR_SECURITY


@functools.cache
def _pdfium() -> ModuleType | None:
    try:
        import pypdfium2
    except ImportError:
        return None
    module: ModuleType = pypdfium2
    return module


def read_pdf(origin: Origin, st: os.stat_result) -> Document | BadInput:
    """Read one PDF; a ``Document`` with ``pages`` and ``converted=True``, or a ``BadInput``."""
    pdfium = _pdfium()
    if pdfium is None:
        return origin.bad("missing_extra", f"{origin.name}: reading PDF needs the docs extra: {DOCS_EXTRA_HINT}")
    with open(origin.path, "rb") as stream:
        if not stream.read(1024).lstrip(b"\x00\t\n\r\f ").startswith(b"%PDF-"):
            return origin.bad("corrupt", f"{origin.name} is not a PDF (no %PDF- header)")
        stream.seek(0)
        try:
            pdf = pdfium.PdfDocument(stream)
        except pdfium.PdfiumError as exc:
            if getattr(exc, "err_code", None) in _PASSWORD_ERRORS or "password" in str(exc).lower():
                return origin.bad("encrypted", f"{origin.name} is encrypted (a password is needed to open it)")
            return origin.bad("corrupt", f"{origin.name} cannot be read as PDF: {exc}")
        try:
            return _read(pdfium, pdf, origin, st)
        finally:
            pdf.close()


def _read(pdfium: ModuleType, pdf: Any, origin: Origin, st: os.stat_result) -> Document | BadInput:
    count = len(pdf)
    pages: list[list[str]] = []
    without_text: list[int] = []
    with_images: list[int] = []
    unreadable: list[int] = []
    for number in range(1, count + 1):
        try:
            page = pdf[number - 1]
        except pdfium.PdfiumError:
            unreadable.append(number)
            pages.append([])
            continue
        try:
            lines, has_images = _page_lines(pdfium, page)
        finally:
            page.close()
        if not any(lines):
            without_text.append(number)
            if has_images:
                with_images.append(number)
        pages.append(lines)
    if count == 0 or len(without_text) + len(unreadable) >= count:
        if with_images:
            return origin.bad(
                "no_text_layer",
                f"{origin.name} has no text layer: {_page_list(with_images)} only images (scanned?); "
                "OCR is out of scope: run an OCR tool (e.g. ocrmypdf) first",
            )
        if unreadable:
            return origin.bad("corrupt", f"{origin.name}: no page can be read ({len(unreadable)} broken)")
        return origin.bad("empty", f"{origin.name} has no text ({count} pages)")
    built = assemble(pages, drop_running=True, join_hyphens=True)
    if is_blank(built.text):
        return origin.bad("empty", f"{origin.name} has no text but running headers or footers")
    metadata: dict[str, Any] = {"title": _title(pdf), "page_count": count, **file_metadata(st)}
    if without_text:
        metadata["pages_without_text"] = without_text
    if unreadable:
        metadata["pages_unreadable"] = unreadable
    if built.running_lines:
        metadata["running_lines"] = list(built.running_lines)
    return Document(origin.name, built.text, origin.name, origin.index, metadata, pages=built.pages, converted=True)


def _page_list(numbers: list[int]) -> str:
    """``page 3 holds`` / ``pages 1, 2 hold`` (the first 20 named)."""
    shown = ", ".join(map(str, numbers[:20])) + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")
    return f"page {shown} holds" if len(numbers) == 1 else f"pages {shown} hold"


def _title(pdf: Any) -> str | None:
    try:
        title = pdf.get_metadata_value("Title")
    except Exception:  # noqa: BLE001 - a broken info dictionary only loses the title
        return None
    return (title.strip() or None) if isinstance(title, str) else None


# --- one page -------------------------------------------------------------------------------------


class _Seg:
    """A run of words on one line: loose box in PDF units (y grows upwards) and its text pieces."""

    __slots__ = ("chars", "x0", "x1", "y0", "y1")

    def __init__(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.x0, self.y0, self.x1, self.y1 = x0, y0, x1, y1
        self.chars: list[str] = []

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def _page_lines(pdfium: ModuleType, page: Any) -> tuple[list[str], bool]:
    """The page's lines in reading order ("" = paragraph break), and whether it holds images."""
    raw = pdfium.raw
    textpage = page.get_textpage()
    try:
        segments = _segments(raw, textpage)
    finally:
        textpage.close()
    if not segments:
        images = page.get_objects(filter=(raw.FPDF_PAGEOBJ_IMAGE,), max_depth=3)
        return [], next(iter(images), None) is not None
    rulings = _Rulings(raw, page)
    return _order(segments, rulings), False


def _segments(raw: Any, textpage: Any) -> list[_Seg]:
    """Words (runs between spaces and line ends) grouped into segments; only word ends are measured."""
    count = raw.FPDFText_CountChars(textpage)
    if count <= 0:
        return []
    text = textpage.get_text_range(0, count)
    if len(text) != count:  # PDFium's text view differs from its char list (rare): read char by char
        text = "".join(chr(raw.FPDFText_GetUnicode(textpage, i)) for i in range(count))
    get_box = raw.FPDFText_GetLooseCharBox
    handle = textpage.raw
    first, last = raw.FS_RECTF(), raw.FS_RECTF()
    segments: list[_Seg] = []
    current: _Seg | None = None
    previous_end = 0
    for match in _WORD.finditer(text):
        start, end = match.span()
        word = match.group()
        if word in _HYPHEN_MARKS:
            word = "-"
        elif not (word.isascii() and word.isprintable()):
            word = word.translate(_CLEAN)
            if not word:
                continue
        if not (get_box(handle, start, first) and get_box(handle, end - 1, last)):
            continue
        x0, x1 = first.left, last.right
        y0, y1 = first.bottom, first.top
        if last.bottom < y0:
            y0 = last.bottom
        if last.top > y1:
            y1 = last.top
        line_end = "\n" in text[previous_end:start]
        spaced = start > previous_end
        previous_end = end
        if current is not None and not line_end:
            height = y1 - y0
            limit = height if height > current.y1 - current.y0 else current.y1 - current.y0
            gap = x0 - current.x1
            if (
                abs((y0 + y1) - (current.y0 + current.y1)) <= 2 * _SAME_LINE * limit
                and -0.5 * limit <= gap <= _SEGMENT_GAP * limit
            ):
                if spaced or gap > 0.25 * limit:
                    current.chars.append(" ")
                current.chars.append(word)
                if x1 > current.x1:
                    current.x1 = x1
                if y0 < current.y0:
                    current.y0 = y0
                if y1 > current.y1:
                    current.y1 = y1
                continue
        current = _Seg(x0, y0, x1, y1)
        current.chars.append(word)
        segments.append(current)
    return segments


class _Rulings:
    """Rules and box edges drawn on a page (table borders), loaded when a gap needs checking."""

    def __init__(self, raw: Any, page: Any) -> None:
        self._raw = raw
        self._page = page
        self._edges: tuple[list[tuple[float, float, float]], list[tuple[float, float, float]]] | None = None

    def _load(self) -> tuple[list[tuple[float, float, float]], list[tuple[float, float, float]]]:
        """``(horizontal, vertical)`` edges as ``(position, start, end)``, touching edges merged."""
        if self._edges is None:
            across: list[tuple[float, float, float]] = []
            down: list[tuple[float, float, float]] = []
            for obj in self._page.get_objects(filter=(self._raw.FPDF_PAGEOBJ_PATH,), max_depth=3):
                left, bottom, right, top = obj.get_bounds()
                if right - left >= 2:
                    across.append((round(bottom), left, right))
                    if top - bottom > 3:
                        across.append((round(top), left, right))
                if top - bottom >= 2:
                    down.append((round(left), bottom, top))
                    if right - left > 3:
                        down.append((round(right), bottom, top))
            self._edges = (_merge(across), _merge(down))
        return self._edges

    def crossed(self, g0: float, g1: float, y0: float, y1: float) -> bool:
        """Whether two or more horizontal rules cross the gap ``g0..g1`` between heights y0 and y1."""
        hits = sum(1 for y, x0, x1 in self._load()[0] if y0 <= y <= y1 and x0 <= g0 + 1 and x1 >= g1 - 1)
        return hits >= 2

    def divides(self, g0: float, g1: float, y0: float, y1: float) -> bool:
        """Whether a vertical rule runs through the gap ``g0..g1`` along heights y0..y1 (a cell border)."""
        return any(g0 - 1 <= x <= g1 + 1 and b <= y0 + 1 and t >= y1 - 1 for x, b, t in self._load()[1])


def _merge(edges: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    merged: list[tuple[float, float, float]] = []
    for at, start, end in sorted(edges):
        if merged and merged[-1][0] == at and start <= merged[-1][2] + 2:
            merged[-1] = (at, merged[-1][1], max(merged[-1][2], end))
        else:
            merged.append((at, start, end))
    return merged


def _order(segments: list[_Seg], rulings: _Rulings) -> list[str]:
    unit = statistics.median(s.height for s in segments)
    lines: list[str] = []
    stack: list[list[_Seg] | str] = [segments]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            lines.append(item)
            continue
        columns = _x_cut(item, unit, rulings)
        bands = _y_cut(item, unit)
        if columns is not None and (bands is None or _columns_first(columns, bands, unit)):
            stack.extend(reversed(columns))
        elif bands is not None:
            for band, paragraph in reversed(bands):
                stack.append(band)
                if paragraph:
                    stack.append("")
        else:
            lines.append(_line(item, unit, rulings))
    return lines


def _columns_first(columns: list[list[_Seg]], bands: list[tuple[list[_Seg], bool]], unit: float) -> bool:
    """Columns win over bands when they start level, or when no band gap is a paragraph gap.

    A title above two columns makes one side start higher: there the bands (title, then columns) come
    first. Columns whose paragraph gaps line up would also give bands: there the columns come first.
    """
    left, right = (max(s.y1 for s in side) for side in columns)
    return abs(left - right) <= unit or not any(paragraph for _, paragraph in bands)


def _x_cut(region: list[_Seg], unit: float, rulings: _Rulings) -> list[list[_Seg]] | None:
    """Left and right columns at the widest column gap, or None."""
    if len(region) < 2:
        return None
    ordered = sorted(region, key=lambda s: s.x0)
    gaps: list[tuple[float, float, float]] = []
    reach = ordered[0].x1
    for seg in ordered[1:]:
        if seg.x0 - reach >= _GUTTER * unit:
            gaps.append((seg.x0 - reach, reach, seg.x0))
        reach = max(reach, seg.x1)
    for _, g0, g1 in sorted(gaps, reverse=True):
        left = [s for s in region if s.x1 <= g0]
        right = [s for s in region if s.x0 >= g1]
        top = min(max(s.y1 for s in left), max(s.y1 for s in right))
        bottom = max(min(s.y0 for s in left), min(s.y0 for s in right))
        side_by_side = top - bottom > 0.5 * unit
        several_lines = any(max(s.y1 for s in side) - min(s.y0 for s in side) > 1.5 * unit for side in (left, right))
        if not (side_by_side and several_lines):
            continue
        y0 = min(s.y0 for s in region) - 0.5 * unit
        y1 = max(s.y1 for s in region) + 0.5 * unit
        if rulings.crossed(g0, g1, y0, y1):
            continue
        return [left, right]
    return None


def _y_cut(region: list[_Seg], unit: float) -> list[tuple[list[_Seg], bool]] | None:
    """Bands top to bottom at the widest horizontal gaps, each with "a paragraph break comes first"."""
    if len(region) < 2:
        return None

    def core(seg: _Seg) -> tuple[float, float]:
        trim = 0.25 * seg.height
        return seg.y0 + trim, seg.y1 - trim

    ordered = sorted(region, key=lambda s: -core(s)[1])
    groups: list[list[_Seg]] = [[ordered[0]]]
    floor = core(ordered[0])[0]
    gaps: list[float] = []
    for seg in ordered[1:]:
        low, high = core(seg)
        if high < floor:
            gaps.append(floor - high)
            groups.append([seg])
        else:
            groups[-1].append(seg)
        floor = min(floor, low)
    if not gaps:
        return None
    widest = max(gaps)
    bands: list[tuple[list[_Seg], bool]] = [(groups[0], False)]
    for gap, group in zip(gaps, groups[1:], strict=True):
        if gap >= 0.9 * widest:
            above = bands[-1][0]
            loose_gap = min(s.y0 for s in above) - max(s.y1 for s in group)
            bands.append((group, loose_gap >= _PARAGRAPH_GAP * unit))
        else:
            bands[-1][0].extend(group)
    return bands


def _line(region: list[_Seg], unit: float, rulings: _Rulings) -> str:
    """One line: segments left to right; a tab where a cell border or a very wide gap separates them."""
    parts: list[str] = []
    reach: float | None = None
    y0 = min(s.y0 for s in region)
    y1 = max(s.y1 for s in region)
    for seg in sorted(region, key=lambda s: s.x0):
        if reach is not None:
            gap = seg.x0 - reach
            if gap >= _TAB_GAP * unit or (gap >= _GUTTER * unit and rulings.divides(reach, seg.x0, y0, y1)):
                parts.append("\t")
            elif gap > 0.15 * unit:
                parts.append(" ")
        parts.append("".join(seg.chars))
        reach = seg.x1 if reach is None else max(reach, seg.x1)
    return "".join(parts)
