"""Pages of lines become one text with page spans; running headers and line-end hyphens are handled.

The text built here IS the document text: entity offsets index into it, and the record carries it.
Nothing is changed after offsets exist, so offsets are exact on the text as written.

Rules (applied in this order, PDF pages only; DOCX and HTML text has no line-end hyphens or
running lines in its body):

1. Running headers and footers. On a document of 2 or more pages, a line that is among the first
   2 or last 2 lines of a page and appears there on more than half of the pages (at least 2) is
   dropped from every page where it sits in those places. Lines are compared after collapsing
   spaces, ignoring case and reading every digit run as one number, so ``Page 3 of 12`` and
   ``Page 4 of 12`` repeat. The distinct lines dropped are reported (``running_lines``).
2. Line-end hyphens. A line ending in letter + hyphen, followed by a line starting with a letter:
   - a soft hyphen (U+00AD) is removed and the lines joined;
   - ``-`` or U+2010 between two lowercase letters is removed and the lines joined
     (``Halvor-`` / ``sen`` -> ``Halvorsen``);
   - between letters otherwise the hyphen is kept and the lines joined
     (``Smith-`` / ``Jones`` -> ``Smith-Jones``), so a name is never split;
   - never across a blank line (a paragraph break). Across a page break only the word fragment
     moves up: it is counted on the page where the word starts. Cost: a compound broken at its own
     hyphen (``well-`` / ``known``) loses that hyphen.
3. Lines of a page are joined with ``\\n``; an empty string in a page's lines is a paragraph break
   (a blank line; repeated breaks collapse). Pages are joined with ``\\n\\n``; each page's span
   covers its own text only; an empty page is an empty span where the next page's text starts.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Assembled", "assemble", "page_of"]

_HEAD_LINES = 2
_SOFT_HYPHENS = ("\u00ad",)
_HARD_HYPHENS = ("-", "\u2010")
_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"\S+")
PAGE_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class Assembled:
    """``text``; ``pages``: ``(start, end)`` per page (end exclusive); ``running_lines``: lines dropped."""

    text: str
    pages: tuple[tuple[int, int], ...]
    running_lines: tuple[str, ...] = ()


def page_of(offset: int, pages: Sequence[tuple[int, int]] | None) -> int | None:
    """The 1-based page holding character ``offset``, or None (no pages, or outside the text).

    An offset in the separator after page N belongs to page N.
    """
    if not pages or offset < pages[0][0] or offset >= pages[-1][1]:
        return None
    starts = [start for start, _ in pages]
    return bisect_right(starts, offset)


def assemble(pages: Sequence[Sequence[str]], *, drop_running: bool = False, join_hyphens: bool = False) -> Assembled:
    """Join pages of lines into one text with page spans (see the module rules)."""
    work = [_tidy(lines) for lines in pages]
    running: tuple[str, ...] = ()
    if drop_running:
        work, running = _drop_running(work)
    if join_hyphens:
        work = _join_hyphens(work)
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    empty_before = 0  # empty pages waiting for the position where the next text starts
    for lines in work:
        page_text = "\n".join(lines)
        if not page_text:
            empty_before += 1
            continue
        if parts:
            parts.append(PAGE_SEPARATOR)
            pos += len(PAGE_SEPARATOR)
        spans.extend([(pos, pos)] * empty_before)
        empty_before = 0
        spans.append((pos, pos + len(page_text)))
        parts.append(page_text)
        pos += len(page_text)
    spans.extend([(pos, pos)] * empty_before)
    return Assembled("".join(parts), tuple(spans), running)


def _tidy(lines: Sequence[str]) -> list[str]:
    """Strip line ends, collapse runs of blank lines, drop blank lines at the page's start and end."""
    out: list[str] = []
    for line in lines:
        line = line.rstrip()
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def _keys(line: str, page: int) -> set[str]:
    """How a line is compared: as written, and with one number read as "the page's number + k"."""
    base = _SPACES.sub(" ", line.strip()).casefold()
    keys = {base}
    for position, run in enumerate(_DIGITS.finditer(base)):
        if len(run.group()) <= 9:
            offset = int(run.group()) - page
            keys.add(f"{offset}:{position}:{base[: run.start()]}#{base[run.end() :]}")
    return keys


def _edge_positions(lines: list[str]) -> list[int]:
    content = [i for i, line in enumerate(lines) if line]
    return sorted(set(content[:_HEAD_LINES] + content[-_HEAD_LINES:]))


def _drop_running(pages: list[list[str]]) -> tuple[list[list[str]], tuple[str, ...]]:
    if len(pages) < 2:
        return pages, ()
    seen: Counter[str] = Counter()
    for number, lines in enumerate(pages, start=1):
        seen.update(set().union(*(_keys(lines[i], number) for i in _edge_positions(lines))))
    needed = max(2, len(pages) // 2 + 1)
    running = {key for key, count in seen.items() if count >= needed and key}
    if not running:
        return pages, ()
    dropped: dict[str, str] = {}  # running key -> the line as first written
    out: list[list[str]] = []
    for number, lines in enumerate(pages, start=1):
        drop: set[int] = set()
        for i in _edge_positions(lines):
            matched = _keys(lines[i], number) & running
            if matched:
                drop.add(i)
                dropped.setdefault(min(matched), lines[i].strip())
        out.append(_tidy([line for i, line in enumerate(lines) if i not in drop]))
    return out, tuple(dict.fromkeys(dropped.values()))


def _hyphen_join(line: str, following: str) -> str | None:
    """The text to keep from ``line`` when it joins ``following``, or None when it does not join."""
    if len(line) < 2 or not following or not following[0].isalpha() or not line[-2].isalpha():
        return None
    mark = line[-1]
    if mark in _SOFT_HYPHENS:
        return line[:-1]
    if mark in _HARD_HYPHENS:
        return line[:-1] if line[-2].islower() and following[0].islower() else line
    return None


def _join_hyphens(pages: list[list[str]]) -> list[list[str]]:
    for p, lines in enumerate(pages):
        i = 0
        while i < len(lines):
            line = lines[i]
            if i + 1 < len(lines):
                kept = _hyphen_join(line, lines[i + 1])
                if kept is not None:
                    lines[i : i + 2] = [kept + lines[i + 1]]
                    continue
            elif p + 1 < len(pages) and pages[p + 1]:
                nxt = pages[p + 1]
                kept = _hyphen_join(line, nxt[0])
                if kept is not None:
                    fragment = _WORD.match(nxt[0])
                    cut = fragment.end() if fragment else 0
                    lines[i] = kept + nxt[0][:cut]
                    nxt[0] = nxt[0][cut:].lstrip()
                    if not nxt[0]:
                        del nxt[0]
                        pages[p + 1] = _tidy(nxt)
                    continue
            i += 1
    return pages
