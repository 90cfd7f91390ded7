"""Alignment: one document's entities from its chunks' answers, each a real span of the document.

Every written entity satisfies ``text == document[start:end]``; offsets are Python code points
(``str`` indexes), never bytes or tokens. The rules come from issue #12 ("Alignment", "Every
mention"). Each chunk's entities are placed by ``grounding`` (edges and NFC matching:
``matching``); this module merges the chunks and marks every mention. :func:`align_document` does
the whole of one document in one call.

Merging chunks (:func:`merge_entities`): a span is *cut* when only whitespace (or the rest of a
word the chunk edge cuts) separates it from an edge of its chunk that lies inside the document,
unless sentence punctuation or a bracket or quote that a name cannot run past lies on the far side
of that edge (``_STOP_BEFORE``, ``_STOP_AFTER``): the name may continue beyond the chunk. Exact
duplicates are written once. Overlapping spans of one type keep the one not cut, then the longer,
then the one from the earlier chunk; a cut span is also dropped when it overlaps an uncut span of
another type. Spans of different types may overlap when neither is cut.

Every mention (:func:`expand_mentions`, ``--mentions all``): every further occurrence of a grounded
entity's exact text (NFC-compared, on edges) is marked with its type, longer names first, each
occurrence once, never overlapping an entity already there. A text grounded under two types is
ambiguous and not expanded. In :func:`align_document` further mentions are placed before cut
spans, so a piece of a name cut by a chunk edge gives way to the whole name found there.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from .chunking import Chunk
from .grounding import Entity, ground_entities
from .matching import CONTEXT_CHARS, TextIndex, context_window, nfc
from .parsing import RawEntity

__all__ = [
    "MENTION_MODES",
    "Alignment",
    "Mentions",
    "align_document",
    "expand_mentions",
    "merge_entities",
]

Mentions = Literal["listed", "all"]
"""``listed``: the spans the model listed. ``all``: also every further occurrence of each name."""
MENTION_MODES: tuple[str, ...] = get_args(Mentions)


@dataclass(frozen=True, slots=True)
class Alignment:
    """One document's aligned entities (sorted as :func:`merge_entities` sorts them) and the number
    of listed entities that were nowhere in their chunk."""

    entities: list[Entity] = field(default_factory=list)
    ungrounded: int = 0


# --- merging chunks ------------------------------------------------------------------------------


class _Spans:
    """Disjoint [start, end) spans, kept sorted; overlap queries in O(log n)."""

    __slots__ = ("_ends", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self._starts, end) - 1  # the last span starting before ``end``
        return i >= 0 and self._ends[i] > start

    def add(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._ends.insert(i, end)


class _Layers:
    """Selected spans by type. Spans of one type are kept in disjoint layers, so that input with
    overlapping spans of one type (possible for :func:`expand_mentions`) is still answered right."""

    def __init__(self) -> None:
        self.by_type: dict[str, list[_Spans]] = {}

    def overlaps(self, start: int, end: int, etype: str | None = None) -> bool:
        """Overlap with a span of ``etype``, or of any type when ``etype`` is None."""
        if etype is not None:
            return any(spans.overlaps(start, end) for spans in self.by_type.get(etype, ()))
        return any(spans.overlaps(start, end) for layers in self.by_type.values() for spans in layers)

    def add(self, ent: Entity) -> None:
        layers = self.by_type.setdefault(ent.type, [])
        for spans in layers:
            if not spans.overlaps(ent.start, ent.end):
                spans.add(ent.start, ent.end)
                return
        spans = _Spans()
        spans.add(ent.start, ent.end)
        layers.append(spans)


def _inner_edge(document: str, pos: int, forward: bool) -> int:
    """The edge nearest ``pos`` going into the chunk (forward from a chunk start, backward from a
    chunk end): ``pos`` itself unless the chunk edge cuts a word or a cluster."""
    ws, we = context_window(document, pos, pos)
    index = TextIndex(document[ws:we], ws)
    rel = pos - ws
    step = 1 if forward else -1
    i = rel
    while 0 <= i <= len(index.text):
        if index.edges[i]:
            return i + ws
        i += step
    return pos


# A name does not run on past these: a span whose only gap to a chunk edge is whitespace is still
# whole when the document has one of these on the far side of the edge.
_STOP_BEFORE = frozenset('.!?;([{"“‘«「『【。！？；（')
_STOP_AFTER = frozenset('.!?;,:)]}"”’»」』】。！？；，、：）')


def _cut_flags(chunk: Chunk, document: str, entities: Sequence[Entity]) -> list[bool]:
    """Whether each entity may be a piece of a name that continues beyond its chunk."""
    n = len(document)
    start_edge = end_edge = None
    if chunk.start > 0:
        edge = _inner_edge(document, chunk.start, True)
        before = document[max(0, edge - CONTEXT_CHARS) : edge].rstrip()
        if before and before[-1] not in _STOP_BEFORE:
            start_edge = edge
    if chunk.end < n:
        edge = _inner_edge(document, chunk.end, False)
        after = document[edge : edge + CONTEXT_CHARS].lstrip()
        if after and after[0] not in _STOP_AFTER:
            end_edge = edge
    flags = []
    for ent in entities:
        cut = False
        if start_edge is not None and ent.start >= chunk.start:
            cut = document[min(start_edge, ent.start) : ent.start].strip() == ""
        if not cut and end_edge is not None and ent.end <= chunk.end:
            cut = document[ent.end : max(end_edge, ent.end)].strip() == ""
        flags.append(cut)
    return flags


def _check(ent: Entity, document: str) -> None:
    if not (0 <= ent.start < ent.end <= len(document)) or document[ent.start : ent.end] != ent.text:
        raise ValueError(f"entity {ent.type} {ent.text!r} is not document[{ent.start}:{ent.end}]")


def _sort_key(ent: Entity) -> tuple[bool, int, int, str, str]:
    return (not ent.grounded, ent.start, ent.end, ent.type, ent.text)


def _collect(
    per_chunk: Iterable[tuple[Chunk, Iterable[Entity]]], document: str
) -> tuple[list[tuple[int, int, Entity]], list[tuple[int, int, Entity]], list[Entity]]:
    """Split into (uncut, cut, ungrounded); the first two as (order, chunk position, entity)."""
    uncut: list[tuple[int, int, Entity]] = []
    cut: list[tuple[int, int, Entity]] = []
    ungrounded: dict[tuple[str, str], Entity] = {}
    for position, (chunk, entities) in enumerate(per_chunk):
        grounded = []
        for ent in entities:
            if ent.grounded:
                _check(ent, document)
                grounded.append(ent)
            else:
                ungrounded.setdefault((ent.type, ent.text), ent)
        for ent, is_cut in zip(grounded, _cut_flags(chunk, document, grounded), strict=True):
            (cut if is_cut else uncut).append((position, ent.start, ent))
    return uncut, cut, list(ungrounded.values())


def _by_priority(items: list[tuple[int, int, Entity]]) -> list[Entity]:
    """Longer first, then the earlier chunk, then position."""
    items.sort(key=lambda t: (-(t[2].end - t[2].start), t[0], t[1], t[2].type))
    return [t[2] for t in items]


def _select_uncut(uncut: list[tuple[int, int, Entity]]) -> tuple[list[Entity], _Layers]:
    layers = _Layers()
    kept: list[Entity] = []
    for ent in _by_priority(uncut):
        if not layers.overlaps(ent.start, ent.end, ent.type):
            layers.add(ent)
            kept.append(ent)
    return kept, layers


def _select_cut(cut: list[tuple[int, int, Entity]], blockers: _Layers) -> list[Entity]:
    """Cut spans that overlap no blocker (any type) and no cut span already kept (same type)."""
    layers = _Layers()
    kept: list[Entity] = []
    for ent in _by_priority(cut):
        if blockers.overlaps(ent.start, ent.end) or layers.overlaps(ent.start, ent.end, ent.type):
            continue
        layers.add(ent)
        kept.append(ent)
    return kept


def merge_entities(per_chunk: Iterable[tuple[Chunk, Iterable[Entity]]], document: str) -> list[Entity]:
    """One document's entities from its chunks' results.

    ``per_chunk`` pairs each chunk with the entities :func:`ground_entities` placed in it (chunks
    whose request failed may be left out); ``document`` is the whole text they were cut from (its
    length says which chunk edges lie inside it). Exact duplicates from chunk overlaps are written
    once; overlapping spans of one type keep the one not cut by a chunk edge, then the longer; a
    cut span overlapping an uncut span of any type is dropped (issue #12, module docstring).
    Ungrounded entities are kept once per (type, text).

    Returns grounded entities sorted by (start, end, type, text), then ungrounded ones by (type,
    text). Raises ``ValueError`` when a grounded entity's text is not ``document[start:end]``.
    """
    uncut, cut, ungrounded = _collect(per_chunk, document)
    kept, layers = _select_uncut(uncut)
    kept += _select_cut(cut, layers)
    return sorted(kept + ungrounded, key=_sort_key)


def _expansions(sources: Iterable[Entity], blockers: _Layers, index: TextIndex) -> list[Entity]:
    """Further occurrences of the sources' texts that overlap no blocker and no other addition."""
    types: dict[str, set[str]] = {}
    first: dict[str, int] = {}
    for ent in sources:
        if ent.grounded:
            needle = nfc(ent.text)
            types.setdefault(needle, set()).add(ent.type)
            first[needle] = min(first.get(needle, ent.start), ent.start)
    added = _Layers()
    out: list[Entity] = []
    nlo, nhi = 0, len(index.norm)
    for needle in sorted(types, key=lambda t: (-len(t), first[t])):
        if len(types[needle]) != 1:
            continue  # listed under two types: ambiguous, not expanded
        (etype,) = types[needle]
        for a, b in index.exact(needle, nlo, nhi):
            if blockers.overlaps(a, b) or added.overlaps(a, b):
                continue
            ent = Entity(etype, index.text[a:b], a, b)
            added.add(ent)
            out.append(ent)
    return out


def expand_mentions(entities: Sequence[Entity], document: str) -> list[Entity]:
    """``--mentions all``: ``entities`` plus every further occurrence of each grounded entity's
    text in ``document``, with that entity's type (issue #12, "Every mention").

    Occurrences are exact (NFC-compared, case and whitespace as written) and on edges; longer
    texts claim occurrences first; each occurrence is added once and never where it would overlap
    an entity already there (of any type). A text grounded under two types is ambiguous and not
    expanded. Ungrounded entities are kept as they are. Offsets are code points of ``document``.

    Returns the merged list sorted as :func:`merge_entities` sorts. Raises ``ValueError`` when a
    grounded entity's text is not ``document[start:end]``.
    """
    blockers = _Layers()
    for ent in entities:
        if ent.grounded:
            _check(ent, document)
            blockers.add(ent)
    added = _expansions(entities, blockers, TextIndex(document))
    return sorted([*entities, *added], key=_sort_key)


def align_document(
    document: str,
    responses: Iterable[tuple[Chunk, Sequence[RawEntity]]],
    *,
    keep_ungrounded: bool = False,
    mentions: Mentions = "listed",
) -> Alignment:
    """Ground every chunk's entities, merge them, and with ``mentions="all"`` mark every further
    mention: the whole alignment of one document in one call.

    ``responses`` pairs each chunk of ``document`` with the entities parsed from its response (a
    chunk whose request failed may be left out). With ``mentions="all"`` further mentions of the
    entities' texts are added before cut spans are placed, so a piece of a name that a chunk edge
    cut gives way to the whole name found at the same place.

    Returns an :class:`Alignment` (entities sorted as :func:`merge_entities` sorts, and the total
    ungrounded count). Raises ``ValueError`` when a chunk is not ``document[start:end]`` or
    ``mentions`` is not one of ``MENTION_MODES``.
    """
    if mentions not in MENTION_MODES:
        raise ValueError(f"mentions must be one of {', '.join(MENTION_MODES)}, not {mentions!r}")
    per_chunk: list[tuple[Chunk, list[Entity]]] = []
    ungrounded = 0
    for chunk, raw in responses:
        entities, lost = ground_entities(raw, chunk, document=document, keep_ungrounded=keep_ungrounded)
        ungrounded += lost
        per_chunk.append((chunk, entities))
    uncut, cut, kept_ungrounded = _collect(per_chunk, document)
    kept, layers = _select_uncut(uncut)
    if mentions == "all":
        cut_kept = _select_cut(list(cut), layers)
        added = _expansions([*kept, *cut_kept], layers, TextIndex(document))
        for ent in added:
            layers.add(ent)
        kept += added
    kept += _select_cut(cut, layers)
    return Alignment(sorted(kept + kept_ungrounded, key=_sort_key), ungrounded)
