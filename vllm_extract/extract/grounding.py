"""Grounding one chunk: each entity the model named for a chunk becomes a real span of the document.

Every placed entity satisfies ``text == document[start:end]``; offsets are Python code points
(``str`` indexes), never bytes or tokens. The rules come from issue #12 ("Alignment"); where a span
may start and end (edges) and how names are matched (NFC) is ``matching``. ``alignment`` merges the
chunks' entities into one document's.

Grounding one chunk (:func:`ground_entities`):

- Matching compares NFC-normalized text (the chunk is normalized cluster by cluster) and maps
  offsets back to the original, so an NFC name is found in NFD text and the written ``text`` is the
  original (NFD) slice.
- Longer names are placed first (ties keep the model's order), so ``Acme`` never lands inside
  ``Acme Corp`` whatever order the model listed them in.
- Each occurrence is consumed once, across all types; a repeated name takes the next free
  occurrence in document order. An occurrence that overlaps an already grounded entity, or any
  occurrence of a longer name grounded in the same chunk, is not used.
- The case- and whitespace-insensitive fallback (any run of whitespace between the words; full
  case folding, ``ß`` ~ ``SS``, for names holding such a letter) applies only when the name has no
  exact occurrence on edges in the chunk, and never to a repeat (a name whose casefolded,
  whitespace-collapsed form came earlier in this chunk's list).
- A name nowhere in the chunk is *ungrounded*: counted, and kept with ``grounded=False`` and
  offsets -1 only when asked. A repeat or a name whose every occurrence is already taken is
  dropped and not counted as ungrounded (it is in the source; it adds no new span).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .chunking import Chunk
from .matching import TextIndex, context_window, nfc
from .parsing import RawEntity
from .segments import trim

__all__ = ["Entity", "ground_entities"]


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity of a document: ``text == document[start:end]`` (code-point offsets, ``end``
    exclusive). An ungrounded entity (kept only on request) has ``grounded=False`` and offsets -1."""

    type: str
    text: str
    start: int
    end: int
    grounded: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The output record's form: ``{"type", "text", "start", "end"}`` plus ``"grounded": False``
        for an ungrounded entity."""
        out: dict[str, Any] = {"type": self.type, "text": self.text, "start": self.start, "end": self.end}
        if not self.grounded:
            out["grounded"] = False
        return out


def _chunk_index(chunk: Chunk, document: str | None) -> TextIndex:
    if document is None:
        return TextIndex(chunk.text, chunk.start)
    if document[chunk.start : chunk.end] != chunk.text:
        raise ValueError(f"chunk {chunk.index} of {chunk.doc_id!r} is not document[{chunk.start}:{chunk.end}]")
    ws, we = context_window(document, chunk.start, chunk.end)
    return TextIndex(document[ws:we], ws)


def _loose_key(text: str) -> str:
    return " ".join(text.casefold().split())


def ground_entities(
    raw: Sequence[RawEntity],
    chunk: Chunk,
    *,
    document: str | None = None,
    keep_ungrounded: bool = False,
) -> tuple[list[Entity], int]:
    """Place the entities the model listed for ``chunk`` at document offsets.

    ``raw`` is the model's list in its order; ``chunk.text == document[chunk.start:chunk.end]``.
    Returns ``(entities, ungrounded)``: the placed entities in the model's order, with offsets in
    code points of the whole document (``chunk.start`` added), and the number of listed entities
    found nowhere in the chunk. With ``keep_ungrounded`` those are in the list too, with
    ``grounded=False`` and offsets -1. Repeats beyond the free occurrences are dropped uncounted.

    ``document``, when given, is the whole text the chunk was cut from: edges at the chunk's ends
    are then judged in context (a chunk cut mid-word does not make its first letters a word).
    Without it the chunk's ends count as the ends of a text.

    The rules (issue #12, module docstring): edges, NFC matching, longer names first, each
    occurrence once across types, fallback only for a name with no exact occurrence and never for
    a repeat. Cost: one pass over the chunk to build the index, then a ``str.find`` scan per
    distinct name (the case-insensitive fallback is a regex scan, only for names not found as is).

    Raises ``ValueError`` when ``document`` is given and the chunk is not its slice.
    """
    index = _chunk_index(chunk, document)
    lo = chunk.start - index.offset
    return _ground(index, raw, lo, lo + len(chunk.text), keep_ungrounded)


def _ground(
    index: TextIndex, raw: Sequence[RawEntity], lo: int, hi: int, keep_ungrounded: bool
) -> tuple[list[Entity], int]:
    nlo, nhi = index.norm_range(lo, hi)
    needles = [nfc(trim(ent.text)) for ent in raw]
    # Longer names first; sorted() is stable, so equal lengths keep the model's order.
    order = sorted(range(len(raw)), key=lambda i: -len(needles[i]))
    taken = bytearray(len(index.text) + 1)  # 1 where a placed entity sits
    reserved = bytearray(len(index.text) + 1)  # 1 where any occurrence of a placed longer name sits
    pending_reserve: list[tuple[int, int]] = []  # occurrences of the current length group
    group_len = -1
    iterators: dict[str, Iterator[tuple[int, int]]] = {}
    has_exact: dict[str, bool] = {}
    key_found: dict[str, bool] = {}  # loose key -> whether its first listing was in the chunk
    reserved_names: set[str] = set()
    placed: list[Entity | None] = [None] * len(raw)
    ungrounded = 0

    def free(span: tuple[int, int]) -> bool:
        a, b = span
        return taken.find(1, a, b) < 0 and reserved.find(1, a, b) < 0

    for i in order:
        needle = needles[i]
        if len(needle) != group_len:
            # Occurrences of longer names bar shorter ones only, never names of the same length.
            for a, b in pending_reserve:
                reserved[a:b] = b"\x01" * (b - a)
            pending_reserve.clear()
            group_len = len(needle)
        ent = raw[i]
        if not needle:
            ungrounded += 1
            if keep_ungrounded:
                placed[i] = Entity(ent.type, ent.text, -1, -1, grounded=False)
            continue
        key = _loose_key(needle)
        repeat = key in key_found
        it = iterators.get(needle)
        if it is None:
            it = iterators[needle] = index.exact(needle, nlo, nhi)
            has_exact[needle] = False
        span: tuple[int, int] | None = None
        for candidate in it:
            has_exact[needle] = True
            if free(candidate):
                span = candidate
                break
        found = has_exact[needle]
        if span is None and not found and not repeat:
            for candidate in index.loose(needle, nlo, nhi):
                found = True
                if free(candidate):
                    span = candidate
                    break
        if not repeat:
            key_found[key] = found
        if span is None:
            if not (found or key_found.get(key, False)):
                ungrounded += 1
                if keep_ungrounded:
                    placed[i] = Entity(ent.type, ent.text, -1, -1, grounded=False)
            continue
        a, b = span
        taken[a:b] = b"\x01" * (b - a)
        placed[i] = Entity(ent.type, index.text[a:b], index.offset + a, index.offset + b)
        if needle not in reserved_names:
            reserved_names.add(needle)
            pending_reserve.extend(index.exact(needle, nlo, nhi))
    return [e for e in placed if e is not None], ungrounded
