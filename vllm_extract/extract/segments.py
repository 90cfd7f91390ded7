"""Where a span may start and end: grapheme clusters and words, shared by alignment and grammars.

An *edge* is a grapheme cluster boundary (Unicode extended grapheme clusters, UAX #29, via the
``regex`` module's ``\\X``: never inside a combining sequence, a ZWJ emoji sequence or a flag) that
is not inside a word of a script written with spaces. A word is a run of letters, digits and
connector punctuation (with their marks and ZWJ/ZWNJ); digits joined by ``.`` or ``,`` are one word
(``1,500.00``, as UAX #29 WB11/12). In scripts written without spaces (Han, kana, Hangul, Thai,
Lao, Khmer, Myanmar, Tibetan and a few more) every grapheme boundary is an edge.

Alignment places spans only on edges; the grounded-decoding grammar lets the model write only
spans made of whole ``units`` (the text cut at every edge), so whatever the model writes is a span
alignment finds as it is.
"""

from __future__ import annotations

import regex

__all__ = ["GRAPHEME", "grapheme_regions", "span_edges", "trim", "units"]

# Scripts written without spaces between words: every grapheme boundary there is an edge.
# Script_Extensions, so that the prolonged sound mark (ー) and iteration marks count too.
_NO_SPACE = "".join(
    rf"\p{{scx={name}}}"
    for name in (
        "Han",
        "Hiragana",
        "Katakana",
        "Bopomofo",
        "Hangul",
        "Yi",
        "Thai",
        "Lao",
        "Khmer",
        "Myanmar",
        "Tibetan",
        "Javanese",
        "Balinese",
        "Tai_Tham",
        "New_Tai_Lue",
        "Tai_Le",
        "Tai_Viet",
    )
)
_WORD_START = rf"[[\p{{L}}\p{{N}}\p{{Pc}}]--[{_NO_SPACE}]]"
_WORD_CONT = rf"[{_WORD_START}\p{{M}}\u200c\u200d]"
# A word of a spaced script; digits joined by . , (and the Arabic separators) stay one word.
_WORD = regex.compile(
    rf"{_WORD_START}{_WORD_CONT}*(?:(?<=\p{{Nd}})[.,\u066b\u066c](?=\p{{Nd}}){_WORD_CONT}+)*", regex.V1
)
GRAPHEME = regex.compile(r"\X")
_NON_ASCII = regex.compile(r"[^\x00-\x7f]+(?:[\x00-\x7f][^\x00-\x7f]+)*")


def grapheme_regions(text: str) -> list[tuple[int, int, list[int]]]:
    """The stretches of ``text`` where grapheme clusters can be longer than one code point, as
    ``(start, end, cluster ends)``; outside them every code point is a cluster (CR LF aside).

    A cluster longer than one code point always holds a non-ASCII character, and reaches at most one
    ASCII character on each side of a run of non-ASCII ones (a base before its marks, a character
    after a prepended mark). So each run, widened by one character each side, is segmented alone;
    runs closer than that are joined, so the stretches never overlap.
    """
    n = len(text)
    out = []
    for m in _NON_ASCII.finditer(text):
        start, end = max(0, m.start() - 1), min(n, m.end() + 1)
        out.append((start, end, [start + c.end() for c in GRAPHEME.finditer(text[start:end])]))
    return out


def span_edges(text: str, regions: list[tuple[int, int, list[int]]] | None = None) -> bytearray:
    """``edges[i] == 1`` when a span may start or end at ``i`` (0 <= i <= len(text)).

    ``regions`` is ``grapheme_regions(text)`` when the caller has it already.
    """
    if regions is None:
        regions = [] if text.isascii() else grapheme_regions(text)
    n = len(text)
    edges = bytearray(b"\x01") * (n + 1)
    i = text.find("\r\n")
    while i >= 0:  # CR LF is one grapheme cluster (UAX #29 GB3)
        edges[i + 1] = 0
        i = text.find("\r\n", i + 2)
    for start, end, ends in regions:
        # Inside the stretch only its cluster ends; its own ends keep what the ASCII side says.
        edges[start + 1 : end] = bytes(end - start - 1)
        for pos in ends:
            if pos < end:
                edges[pos] = 1
    _cut_words(text, edges)
    return edges


_ASCII_WORD = bytes(1 if chr(i).isalnum() or chr(i) == "_" else 0 for i in range(128)).ljust(256, b"\x00")
_ASCII_NUMBER_JOIN = regex.compile(r"(?<=[0-9])[.,](?=[0-9])")
_NON_ASCII_TOKEN = regex.compile(r"\S*[^\x00-\x7f]\S*")


def _cut_words(text: str, edges: bytearray) -> None:
    """Clear ``edges`` inside every word of a spaced script (see ``_WORD``).

    ASCII letters and digits are done at once with integer bit operations (position ``i`` is inside
    a word when characters ``i-1`` and ``i`` are both word characters); whitespace-separated tokens
    holding a non-ASCII character go through ``_WORD``. Both give the same answer on ASCII words.
    """
    n = len(text)
    if n < 2:
        return
    cls = text.encode("ascii", "replace").translate(_ASCII_WORD)  # one byte per code point
    both = int.from_bytes(cls[:-1], "big") & int.from_bytes(cls[1:], "big")
    if both:
        mid = int.from_bytes(edges[1:n], "big")
        edges[1:n] = (mid & ~both).to_bytes(n - 1, "big")
    for m in _ASCII_NUMBER_JOIN.finditer(text):
        edges[m.start()] = edges[m.end()] = 0
    if text.isascii():
        return
    for token in _NON_ASCII_TOKEN.finditer(text):
        for m in _WORD.finditer(text, token.start(), token.end()):
            start, end = m.span()
            if end - start > 1:
                edges[start + 1 : end] = bytes(end - start - 1)


def units(text: str) -> list[str]:
    """``text`` cut at every edge, whitespace runs kept whole: the pieces a grounded span is made
    of. ``"".join(units(text)) == text``; ``[]`` for an empty text."""
    edges = span_edges(text)
    out: list[str] = []
    start = 0
    for end in range(1, len(text) + 1):
        if not edges[end]:
            continue
        piece = text[start:end]
        if out and piece.isspace() and out[-1].isspace():
            out[-1] += piece
        else:
            out.append(piece)
        start = end
    return out


def trim(name: str) -> str:
    """``name`` without whitespace at its ends, never cutting a grapheme cluster: a space that
    carries marks (``" \u0301"``, ``" 🏽"``: one cluster, one unit of ``units``) stays, whole.

    ``str.strip`` would leave the mark alone at the start, which is never an edge, so a span the
    grammar allows (``"  🏽1"``, units ``" "``, ``" 🏽"``, ``"1"``) would not be found. ASCII names
    (and names whose ends are not whitespace) are ``name.strip()``.
    """
    stripped = name.strip()
    if stripped == name or name.isascii():
        return stripped
    clusters = [m.group() for m in GRAPHEME.finditer(name)]
    first, last = 0, len(clusters)
    while first < last and clusters[first].isspace():
        first += 1
    while last > first and clusters[last - 1].isspace():
        last -= 1
    return "".join(clusters[first:last])
