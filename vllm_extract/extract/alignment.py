"""Alignment: each entity the model named becomes a real span of the document, at the right place.

Every written entity satisfies ``text == document[start:end]``; offsets are Python code points
(``str`` indexes), never bytes or tokens. The rules come from issue #12 ("Alignment", "Every
mention"); grapheme clusters are Unicode's extended grapheme clusters (UAX #29, via the ``regex``
module's ``\\X``).

Edges. A span starts and ends on an *edge*: a grapheme cluster boundary (never inside a combining
sequence, a ZWJ emoji sequence or a flag) that is not inside a word of a script written with
spaces. A word is a run of letters, digits and connector punctuation (with their marks and
ZWJ/ZWNJ); digits joined by ``.`` or ``,`` are one word (``1,500.00``, as UAX #29 WB11/12), so
``500`` is never found inside ``1,500``. Apostrophes and hyphens end a word, so ``Acme`` is found in
``Acme's`` and ``Müller`` in ``Müller-Łukasiewicz``. In scripts written without spaces (Han,
Hiragana, Katakana, Hangul, Thai, Lao, Khmer, Myanmar, Tibetan and a few more) every grapheme
boundary is an edge; Hangul is counted among them because Korean particles attach to nouns
(``서울에서`` holds ``서울``).

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

Merging chunks (:func:`merge_entities`): a span is *cut* when only whitespace (or the rest of a
word the chunk edge cuts) separates it from an edge of its chunk that lies inside the document,
unless sentence punctuation or a bracket or quote that a name cannot run past lies on the far side
of that edge (``_STOP_BEFORE``, ``_STOP_AFTER``): the name may continue beyond the chunk. Exact
duplicates are written once. Overlapping spans of one
type keep the one not cut, then the longer, then the one from the earlier chunk; a cut span is also
dropped when it overlaps an uncut span of another type. Spans of different types may overlap when
neither is cut.

Every mention (:func:`expand_mentions`, ``--mentions all``): every further occurrence of a grounded
entity's exact text (NFC-compared, on edges) is marked with its type, longer names first, each
occurrence once, never overlapping an entity already there. A text grounded under two types is
ambiguous and not expanded. In :func:`align_document` further mentions are placed before cut
spans, so a piece of a name cut by a chunk edge gives way to the whole name found there.

Cost: building the index of a text is linear (ASCII stretches by integer bit operations, the
``regex`` module only over non-ASCII runs); each distinct name is then one ``str.find`` scan.
"""

from __future__ import annotations

import bisect
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import regex

from .chunking import Chunk
from .parsing import RawEntity
from .segments import GRAPHEME as _GRAPHEME
from .segments import grapheme_regions as _regions
from .segments import span_edges as _edges

__all__ = [
    "MENTION_MODES",
    "Alignment",
    "Entity",
    "Mentions",
    "align_document",
    "expand_mentions",
    "ground_entities",
    "merge_entities",
]

Mentions = Literal["listed", "all"]
"""``listed``: the spans the model listed. ``all``: also every further occurrence of each name."""
MENTION_MODES: tuple[str, ...] = get_args(Mentions)

# Characters of document context read on each side of a chunk to judge edges at its ends. A word
# or a grapheme cluster longer than this that crosses a chunk edge is judged from the part inside.
_CONTEXT = 64



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


@dataclass(frozen=True, slots=True)
class Alignment:
    """One document's aligned entities (sorted as :func:`merge_entities` sorts them) and the number
    of listed entities that were nowhere in their chunk."""

    entities: list[Entity] = field(default_factory=list)
    ungrounded: int = 0


# --- the index of one text ---------------------------------------------------------------------


def _nfc(text: str) -> str:
    """NFC of ``text``, cluster by cluster (the same form the document index compares against)."""
    if text.isascii() or unicodedata.is_normalized("NFC", text):
        return text
    return "".join(unicodedata.normalize("NFC", m.group()) for m in _GRAPHEME.finditer(text))


class _Index:
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


def _window(document: str, start: int, end: int) -> tuple[int, int]:
    """A slice of ``document`` around [start, end) with enough context to judge edges at both
    ends: up to ``_CONTEXT`` characters each side, starting after a whitespace character when one
    is there (a cluster or word never spans whitespace)."""
    ws = max(0, start - _CONTEXT)
    for i in range(start - 1, ws - 1, -1):
        if document[i].isspace():
            ws = i + 1
            break
    return ws, min(len(document), end + _CONTEXT)


def _chunk_index(chunk: Chunk, document: str | None) -> _Index:
    if document is None:
        return _Index(chunk.text, chunk.start)
    if document[chunk.start : chunk.end] != chunk.text:
        raise ValueError(f"chunk {chunk.index} of {chunk.doc_id!r} is not document[{chunk.start}:{chunk.end}]")
    ws, we = _window(document, chunk.start, chunk.end)
    return _Index(document[ws:we], ws)


# --- grounding one chunk -------------------------------------------------------------------------


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
    index: _Index, raw: Sequence[RawEntity], lo: int, hi: int, keep_ungrounded: bool
) -> tuple[list[Entity], int]:
    nlo, nhi = index.norm_range(lo, hi)
    needles = [_nfc(ent.text.strip()) for ent in raw]
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
    ws, we = _window(document, pos, pos)
    index = _Index(document[ws:we], ws)
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
        before = document[max(0, edge - _CONTEXT) : edge].rstrip()
        if before and before[-1] not in _STOP_BEFORE:
            start_edge = edge
    if chunk.end < n:
        edge = _inner_edge(document, chunk.end, False)
        after = document[edge : edge + _CONTEXT].lstrip()
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


# --- every mention -------------------------------------------------------------------------------


def _expansions(sources: Iterable[Entity], blockers: _Layers, index: _Index) -> list[Entity]:
    """Further occurrences of the sources' texts that overlap no blocker and no other addition."""
    types: dict[str, set[str]] = {}
    first: dict[str, int] = {}
    for ent in sources:
        if ent.grounded:
            needle = _nfc(ent.text)
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
    added = _expansions(entities, blockers, _Index(document))
    return sorted([*entities, *added], key=_sort_key)


# --- one document --------------------------------------------------------------------------------


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
        added = _expansions([*kept, *cut_kept], layers, _Index(document))
        for ent in added:
            layers.add(ent)
        kept += added
    kept += _select_cut(cut, layers)
    return Alignment(sorted(kept + kept_ungrounded, key=_sort_key), ungrounded)
