"""Alignment: each entity the model named becomes a real span of the document.

``text`` is always ``document[start:end]`` (Python code-point offsets). Entities repeated in chunk
overlaps are written once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .chunking import Chunk
from .parsing import RawEntity

__all__ = ["Entity", "ground_entities", "merge_entities"]


@dataclass(frozen=True, slots=True)
class Entity:
    """A grounded entity: ``text == document[start:end]`` (code-point offsets)."""

    type: str
    text: str
    start: int
    end: int
    grounded: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "text": self.text, "start": self.start, "end": self.end}
        if not self.grounded:
            out["grounded"] = False
        return out


def ground_entities(
    raw: Sequence[RawEntity], chunk: Chunk, *, keep_ungrounded: bool = False
) -> tuple[list[Entity], int]:
    """Map entities to document offsets inside ``chunk``; returns (entities, ungrounded count).

    Repeated mentions of the same text map to successive occurrences in the chunk.
    """
    grounded: list[Entity] = []
    ungrounded = 0
    cursor: dict[tuple[str, str], int] = {}
    for ent in raw:
        key = (ent.type, ent.text)
        span = _find(chunk.text, ent.text, cursor.get(key, 0))
        if span is None and key in cursor:
            span = _find(chunk.text, ent.text, 0)
        if span is None:
            ungrounded += 1
            if keep_ungrounded:
                grounded.append(Entity(ent.type, ent.text, -1, -1, grounded=False))
            continue
        a, b = span
        cursor[key] = b
        grounded.append(Entity(ent.type, chunk.text[a:b], chunk.start + a, chunk.start + b))
    return grounded, ungrounded


def _find(haystack: str, needle: str, pos: int) -> tuple[int, int] | None:
    needle = needle.strip()
    if not needle:
        return None
    i = haystack.find(needle, pos)
    if i >= 0:
        return i, i + len(needle)
    words = needle.split()
    pattern = re.compile(r"\s+".join(re.escape(w) for w in words), re.IGNORECASE)
    match = pattern.search(haystack, pos)
    if match is not None:
        return match.start(), match.end()
    return None


def merge_entities(per_chunk: Iterable[Iterable[Entity]]) -> list[Entity]:
    """One list per document: chunk-overlap repeats removed, sorted by position then type."""
    seen: set[tuple[str, int, int, str]] = set()
    merged: list[Entity] = []
    for entities in per_chunk:
        for ent in entities:
            key = (ent.type, ent.start, ent.end, ent.text)
            if key in seen:
                continue
            seen.add(key)
            merged.append(ent)
    merged.sort(key=lambda e: (not e.grounded, e.start, e.end, e.type, e.text))
    return merged
