"""Where a name can sit in a text: edges, NFC matching, and finding occurrences fast.

Alignment (``grounding``, ``alignment``) places every entity on a real span of the document;
this module says where a span may start and end and finds a name's occurrences. Offsets are Python
code points (``str`` indexes); grapheme clusters are Unicode's extended grapheme clusters (UAX #29,
via the ``regex`` module's ``\\X``). Span edges themselves are defined in ``segments`` (shared with
the grammar).

Edges. A span starts and ends on an *edge*: a grapheme cluster boundary (never inside a combining
sequence, a ZWJ emoji sequence or a flag) that is not inside a word of a script written with
spaces. A word is a run of letters, digits and connector punctuation (with their marks and
ZWJ/ZWNJ); digits joined by ``.`` or ``,`` are one word (``1,500.00``, as UAX #29 WB11/12), so
``500`` is never found inside ``1,500``. Apostrophes and hyphens end a word, so ``Acme`` is found in
``Acme's`` and ``Müller`` in ``Müller-Łukasiewicz``. In scripts written without spaces (Han,
Hiragana, Katakana, Hangul, Thai, Lao, Khmer, Myanmar, Tibetan and a few more) every grapheme
boundary is an edge; Hangul is counted among them because Korean particles attach to nouns
(``서울에서`` holds ``서울``).

Matching compares NFC-normalized text (the text is normalized cluster by cluster) and maps offsets
back to the original, so an NFC name is found in NFD text and the span found is the original (NFD)
slice.

Cost: building the index of a text (``TextIndex``) is linear (ASCII stretches by integer bit
operations, the ``regex`` module only over non-ASCII runs); each distinct name is then one
``str.find`` scan.
"""

from __future__ import annotations

import bisect
import unicodedata
from collections.abc import Iterator

import regex

from .segments import GRAPHEME as _GRAPHEME
from .segments import grapheme_regions as _regions
from .segments import span_edges as _edges

__all__ = ["CONTEXT_CHARS", "TextIndex", "context_window", "nfc"]

# Characters of document context read on each side of a chunk to judge edges at its ends. A word
# or a grapheme cluster longer than this that crosses a chunk edge is judged from the part inside.
CONTEXT_CHARS = 64


def nfc(text: str) -> str:
    """NFC of ``text``, cluster by cluster (the same form the document index compares against)."""
    if text.isascii() or unicodedata.is_normalized("NFC", text):
        return text
    return "".join(unicodedata.normalize("NFC", m.group()) for m in _GRAPHEME.finditer(text))


class TextIndex:
    """Edges and the NFC form of ``text`` (a window of the document starting at ``offset``)."""

    __slots__ = ("_linear", "_nb", "_ob", "edges", "norm", "offset", "text")

    def __init__(self, text: str, offset: int = 0) -> None:
        self.text = text
        self.offset = offset
        regions = [] if text.isascii() else _regions(text)
        self.edges = _edges(text, regions)
        # Normalization map: points (original, normalized), and whether the stretch after each
        # point maps one to one (an ASCII stretch) or is one cluster (changed by NFC, opaque).
        # None when the text is NFC already.
        self._ob: list[int] | None = None
        self._nb: list[int] | None = None
        self._linear: list[bool] = []
        if not regions or unicodedata.is_normalized("NFC", text):
            self.norm = text
            return
        parts: list[str] = []
        ob: list[int] = []
        nb: list[int] = []
        linear: list[bool] = []

        def point(piece: str, orig_len: int) -> None:
            ob.append(pos)
            nb.append(npos)
            linear.append(len(piece) == orig_len)
            parts.append(piece)

        pos = npos = 0
        for start, _end, ends in regions:
            if start > pos:
                point(text[pos:start], start - pos)
                npos += start - pos
                pos = start
            for cluster_end in ends:
                piece = unicodedata.normalize("NFC", text[pos:cluster_end])
                point(piece, 1 if cluster_end - pos == 1 else -1)
                npos += len(piece)
                pos = cluster_end
        if pos < len(text):
            point(text[pos:], len(text) - pos)
            npos += len(text) - pos
            pos = len(text)
        point("", -1)  # the end
        self.norm = "".join(parts)
        self._ob, self._nb, self._linear = ob, nb, linear

    def norm_range(self, lo: int, hi: int) -> tuple[int, int]:
        """Normalized positions of the first mappable position >= ``lo`` and the last <= ``hi``."""
        if self._ob is None or self._nb is None:
            return lo, hi
        ob, nb = self._ob, self._nb
        i = bisect.bisect_right(ob, lo) - 1
        nlo = nb[i] + (lo - ob[i]) if ob[i] == lo or self._linear[i] else nb[i + 1]
        j = bisect.bisect_right(ob, hi) - 1
        nhi = nb[j] + (hi - ob[j]) if ob[j] == hi or self._linear[j] else nb[j]
        return nlo, max(nlo, nhi)

    def _orig(self, npos: int) -> int:
        if self._nb is None or self._ob is None:
            return npos
        i = bisect.bisect_right(self._nb, npos) - 1
        if self._nb[i] == npos or self._linear[i]:
            return self._ob[i] + (npos - self._nb[i])
        return -1  # inside a cluster that normalization changed

    def span(self, nstart: int, nend: int) -> tuple[int, int] | None:
        """Original (window) offsets of a normalized match when both ends are edges, else None."""
        a, b = self._orig(nstart), self._orig(nend)
        if a < 0 or b <= a or not self.edges[a] or not self.edges[b]:
            return None
        return a, b

    def exact(self, needle: str, nlo: int, nhi: int) -> Iterator[tuple[int, int]]:
        """Occurrences of the normalized ``needle`` inside ``norm[nlo:nhi]`` that sit on edges, in
        order (original window offsets); ``str.find`` does the scanning."""
        m = len(needle)
        i = self.norm.find(needle, nlo, nhi)
        while i >= 0:
            found = self.span(i, i + m)
            if found is not None:
                yield found
            i = self.norm.find(needle, i + 1, nhi)

    def loose(self, needle: str, nlo: int, nhi: int) -> Iterator[tuple[int, int]]:
        """Case-insensitive (full case folding) occurrences with any run of whitespace between the
        words of ``needle``, on edges, in order."""
        words = needle.split()
        if not words:
            return
        # Full case folding (ß ~ SS) costs a slow compile; only names that need it get it.
        flags = regex.IGNORECASE | (regex.FULLCASE if any(len(c.casefold()) > 1 for c in needle) else 0)
        pattern = regex.compile(r"\s+".join(regex.escape(w) for w in words), flags)
        for m in pattern.finditer(self.norm, nlo, nhi, overlapped=True):
            found = self.span(m.start(), m.end())
            if found is not None:
                yield found

    def is_edge(self, pos: int) -> bool:
        return bool(self.edges[pos - self.offset])


def context_window(document: str, start: int, end: int) -> tuple[int, int]:
    """A slice of ``document`` around [start, end) with enough context to judge edges at both
    ends: up to ``CONTEXT_CHARS`` characters each side, starting after a whitespace character when one
    is there (a cluster or word never spans whitespace)."""
    ws = max(0, start - CONTEXT_CHARS)
    for i in range(start - 1, ws - 1, -1):
        if document[i].isspace():
            ws = i + 1
            break
    return ws, min(len(document), end + CONTEXT_CHARS)
