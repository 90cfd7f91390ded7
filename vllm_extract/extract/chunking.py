"""Cutting a document into chunks of at most N tokens, on paragraph or sentence boundaries.

Token positions come from the tokenizer's character offsets of the whole document (one
tokenization per document). Each chunk knows its character span ``[start, end)`` in the document,
so entities found in it map back to document offsets. Consecutive chunks overlap by about
``overlap`` of the chunk size so an entity cut by one boundary is whole in the next chunk.

The count here is of the chunk as it sits inside the document; the exact count of the full
prompt (instructions + chat template + chunk) is checked again when the prompt is built.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from .tokens import Tokenizer

__all__ = ["Chunk", "chunk_document", "split_span"]

_PARAGRAPH = re.compile(r"\n[ \t]*\n")
# CJK full stops end a sentence with no space after them.
_SENTENCE = re.compile(r"(?<=[.!?;:])[\"')\]]*\s+|(?<=[。！？])[」』）”’]*\s*|\n")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Chunk:
    """A span of one document. ``text == document[start:end]``."""

    doc_id: str
    index: int
    start: int
    end: int
    text: str
    tokens: int


def chunk_document(doc_id: str, text: str, tokenizer: Tokenizer, max_tokens: int, overlap: float = 0.1) -> list[Chunk]:
    """Chunks of at most ``max_tokens`` tokens (as counted inside the document) covering ``text``."""
    offsets = tokenizer.offsets(text)
    if len(offsets) <= max_tokens:
        return [Chunk(doc_id, 0, 0, len(text), text, len(offsets))]
    starts = [a for a, _ in offsets]
    overlap_tokens = int(max_tokens * overlap)
    spans: list[tuple[int, int]] = []
    start_tok = 0
    start_char = 0
    n = len(offsets)
    while True:
        end_tok = start_tok + max_tokens
        if end_tok >= n:
            spans.append((start_char, len(text)))
            break
        hard_end = offsets[end_tok][0]  # the first token that does not fit starts here
        end_char = _snap_back(text, start_char, hard_end)
        spans.append((start_char, end_char))
        # The next chunk starts about overlap_tokens before this one ends, at a boundary.
        end_idx = bisect.bisect_left(starts, end_char)
        back_tok = max(start_tok + 1, end_idx - overlap_tokens)
        next_char = _snap_forward(text, offsets[back_tok][0], end_char) if overlap_tokens else end_char
        if next_char <= start_char:
            next_char = end_char
        start_char = next_char
        start_tok = _first_token(offsets, starts, start_char)
    return [Chunk(doc_id, i, a, b, text[a:b], _tokens_in(offsets, starts, a, b)) for i, (a, b) in enumerate(spans)]


def _first_token(offsets: list[tuple[int, int]], starts: list[int], char: int) -> int:
    """Index of the first token with text at or after ``char``: a token that starts before ``char``
    but reaches past it (a chunk starting mid-token, e.g. after the space of " word") counts."""
    i = bisect.bisect_left(starts, char)
    while i > 0 and offsets[i - 1][1] > char:
        i -= 1
    return i


def _tokens_in(offsets: list[tuple[int, int]], starts: list[int], a: int, b: int) -> int:
    return bisect.bisect_left(starts, b) - _first_token(offsets, starts, a)


def _snap_back(text: str, lo: int, hi: int) -> int:
    """The best cut at or before ``hi``: a paragraph break, else a sentence end, else a space,
    searched in the last half of [lo, hi); else ``hi`` itself."""
    floor = lo + (hi - lo) // 2
    window = text[floor:hi]
    for pattern in (_PARAGRAPH, _SENTENCE, _SPACE):
        last = None
        for match in pattern.finditer(window):
            last = match
        if last is not None and floor + last.end() > lo:
            return floor + last.end()
    return hi


def _snap_forward(text: str, lo: int, hi: int) -> int:
    """The first sentence (else word) start in [lo, hi); ``lo`` when none."""
    window = text[lo:hi]
    for pattern in (_SENTENCE, _SPACE):
        match = pattern.search(window)
        if match is not None and lo + match.end() < hi:
            return lo + match.end()
    return lo


def split_span(chunk: Chunk) -> list[Chunk]:
    """Two halves of a chunk, cut at a boundary near the middle (used when a built prompt turns
    out over budget). Indexes are provisional; the caller renumbers."""
    mid = chunk.start + (chunk.end - chunk.start) // 2
    full = chunk.text
    cut = _snap_back(full, 0, mid - chunk.start) + chunk.start
    if cut <= chunk.start or cut >= chunk.end:
        cut = mid
    half = max(chunk.tokens // 2, 1)
    return [
        Chunk(chunk.doc_id, chunk.index, chunk.start, cut, full[: cut - chunk.start], half),
        Chunk(chunk.doc_id, chunk.index, cut, chunk.end, full[cut - chunk.start :], chunk.tokens - half),
    ]
