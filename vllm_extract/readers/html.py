"""HTML files (``.html``, ``.htm``): the main text, without scripts, styles and navigation.

Library: selectolax (its Lexbor engine), installed by the ``docs`` extra. Why: a full HTML5
parser (malformed markup is repaired the way browsers repair it), C speed, one wheel with no
dependencies, CSS selectors to remove page chrome. We do not use a boilerplate guesser such as
trafilatura: for a court opinion or a filing every paragraph matters, and a statistical
main-content guess may drop short paragraphs and changes its output between versions (the text
is what offsets index into); it also pulls in a dozen packages. Instead a fixed rule:

1. Removed with everything inside: ``script style noscript template svg canvas iframe object
   embed nav aside button select input textarea dialog``, elements with ``hidden``,
   ``aria-hidden="true"``, an inline ``display:none``, and the ARIA roles navigation, banner,
   contentinfo, complementary, search, menu, menubar; ``header`` and ``footer`` unless inside
   an ``article``, ``aside``, ``main``, ``nav`` or ``section`` (there they belong to the content).
2. The text comes from the first ``main`` (or ``role="main"``); without one, from the outermost
   ``article`` elements in order; without those, from ``body``.
3. Whitespace collapses as a browser shows it (``pre`` keeps its own); block elements start a new
   line, paragraphs, headings, lists, tables, quotes and ``pre`` are set apart by a blank line;
   ``br`` is a line break; table cells on a row are joined by tabs. NBSP (U+00A0, U+202F) becomes
   a space and soft hyphens (U+00AD) are removed.

Encoding: a byte-order mark, else ``<meta charset>`` (or ``http-equiv`` content) in the first
4 KiB, else UTF-8 if the bytes decode, else windows-1252 (what browsers assume).

Pages: HTML has none; the document is one page. Errors: ``empty`` (no text left),
``missing_extra``.
"""

from __future__ import annotations

import codecs
import functools
import os
import re
from types import ModuleType
from typing import Any

from ._files import DOCS_EXTRA_HINT, file_metadata
from ._items import BadInput, Document, Origin
from .pages import assemble
from .text import is_blank

__all__ = ["read_html"]

_REMOVE = (
    "script, style, noscript, template, svg, canvas, iframe, object, embed, nav, aside, button, select, input, "
    "textarea, dialog, [hidden], [aria-hidden=true], [style*='display:none'], [style*='display: none'], "
    "[role=navigation], [role=banner], [role=contentinfo], [role=complementary], [role=search], [role=menu], "
    "[role=menubar]"
)
_SECTIONING = frozenset({"article", "aside", "main", "nav", "section"})
_BLOCK = frozenset({"address", "article", "blockquote", "body", "caption", "center", "dd", "details", "div", "dl",
                    "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
                    "header", "hgroup", "hr", "legend", "li", "main", "menu", "ol", "p", "pre", "section", "summary",
                    "table", "tbody", "tfoot", "thead", "tr", "ul"})  # fmt: skip
_PARAGRAPH = frozenset({"blockquote", "dl", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "ol", "p", "pre",
                        "table", "ul"})  # fmt: skip
_WHITESPACE = re.compile(r"[ \t\n\r\f]+")
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]+)""", re.IGNORECASE)
_LEGACY = {"iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "ascii": "cp1252", "us-ascii": "cp1252"}
_CLEAN = {0xA0: " ", 0x202F: " ", 0xAD: None}


@functools.cache
def _lexbor() -> ModuleType | None:
    try:
        from selectolax import lexbor
    except ImportError:
        return None
    return lexbor


def read_html(origin: Origin, st: os.stat_result) -> Document | BadInput:
    """Read one HTML file; a one-page ``Document`` with ``converted=True``, or a ``BadInput``."""
    lexbor = _lexbor()
    if lexbor is None:
        return origin.bad("missing_extra", f"{origin.name}: reading HTML needs the docs extra: {DOCS_EXTRA_HINT}")
    try:
        with open(origin.path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        return origin.bad("unreadable", f"cannot read {origin.name}: {exc.strerror}")
    tree = lexbor.LexborHTMLParser(decode_html(data))
    title = _title(tree)
    text = html_text(tree)
    if is_blank(text):
        return origin.bad("empty", f"{origin.name} has no text outside scripts, styles and navigation")
    built = assemble([[text]])
    metadata: dict[str, Any] = {"title": title, "page_count": 1, **file_metadata(st)}
    return Document(origin.name, built.text, origin.name, origin.index, metadata, pages=built.pages, converted=True)


def decode_html(data: bytes) -> str:
    """Decode HTML bytes: BOM, then ``<meta charset>``, then UTF-8, then windows-1252."""
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(codec, "replace")
    declared = _CHARSET.search(data[:4096])
    if declared:
        name = declared.group(1).decode("ascii").lower()
        name = _LEGACY.get(name, name)
        try:
            codecs.lookup(name)
        except LookupError:
            pass
        else:
            return data.decode(name, "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _title(tree: Any) -> str | None:
    for selector in ("head > title", "title", "h1"):
        node = tree.css_first(selector)
        if node is not None:
            title = _WHITESPACE.sub(" ", node.text()).strip()
            if title:
                return title
    return None


def html_text(tree: Any) -> str:
    """The main text of a parsed page (see the module rules); the tree is modified."""
    for node in tree.css(_REMOVE):
        node.decompose()
    for node in tree.css("header, footer"):
        parent = node.parent
        while parent is not None and parent.tag not in _SECTIONING:
            parent = parent.parent
        if parent is None:
            node.decompose()
    main = tree.css_first("main, [role=main]")
    articles = [a for a in tree.css("article") if not _inside(a, "article")]
    roots = [main] if main is not None else articles or [tree.body]
    out = _Writer()
    for root in roots:
        if root is not None:
            out.walk(root)
            out.block(2)
    return "".join(out.parts).translate(_CLEAN)


def _inside(node: Any, tag: str) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag == tag:
            return True
        parent = parent.parent
    return False


class _Writer:
    """Writes text the way a browser lays it out, one node at a time."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.breaks = 0  # line breaks owed before the next text
        self.space = False  # a space owed before the next text
        self.tab = False  # a cell separator owed before the next text
        self.row_has_cell = False

    def walk(self, root: Any) -> None:
        stack: list[tuple[Any, bool, bool]] = [(root, False, False)]  # (node, leaving, inside pre)
        while stack:
            node, leaving, pre = stack.pop()
            tag = node.tag
            if leaving:
                if tag in _BLOCK:
                    self.block(2 if tag in _PARAGRAPH else 1)
                continue
            if tag == "-text":
                self.text(node.text(deep=False) or "", pre)
                continue
            if tag in ("-comment", "-doctype", "head", "title", "meta", "link"):
                continue
            if tag == "br":
                if self.parts:
                    self.line_break()
                continue
            if tag in _BLOCK:
                self.block(2 if tag in _PARAGRAPH else 1)
            if tag == "tr":
                self.row_has_cell = False
            elif tag in ("td", "th"):
                if self.row_has_cell:
                    self.tab = True
                self.row_has_cell = True
            stack.append((node, True, pre))
            children = []
            child = node.child
            while child is not None:
                children.append(child)
                child = child.next
            inner = pre or tag == "pre"
            stack.extend((c, False, inner) for c in reversed(children))

    def text(self, raw: str, pre: bool) -> None:
        if pre:
            if raw:
                self.write(raw, lead=False)
            return
        collapsed = _WHITESPACE.sub(" ", raw)
        body = collapsed.strip(" ")
        if not body:
            self.space = self.space or bool(collapsed)
            return
        self.write(body, lead=collapsed.startswith(" "))
        self.space = collapsed.endswith(" ")

    def write(self, body: str, *, lead: bool) -> None:
        if self.parts:
            if self.breaks:
                self.parts.append("\n" * self.breaks)
            elif self.tab:
                self.parts.append("\t")
            elif self.space or lead:
                self.parts.append(" ")
        self.parts.append(body)
        self.breaks, self.space, self.tab = 0, False, False

    def block(self, breaks: int) -> None:
        if self.parts:
            self.breaks = max(self.breaks, breaks)
        self.space = self.tab = False

    def line_break(self) -> None:
        self.breaks = min(self.breaks + 1, 2)
        self.space = self.tab = False
