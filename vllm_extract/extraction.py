"""The extraction task: instructions, JSON schema, response parsing, grounding and de-duplication.

Prompts put the shared instructions first (system message) and the chunk last (user message) so
prefix caching reuses the instructions across every request of a run. Responses are constrained
by a JSON schema; a response cut at ``max_tokens`` is still mined for its complete entities.

Grounding maps each entity the model names to a real span of the document: exact match first,
then case-insensitive, then whitespace-insensitive. ``text`` is always ``document[start:end]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .chunking import Chunk
from .config import EntityType, ExtractionConfig

__all__ = [
    "Entity",
    "RawEntity",
    "build_instructions",
    "build_messages",
    "build_schema",
    "ground_entities",
    "merge_entities",
    "parse_response",
]


@dataclass(frozen=True, slots=True)
class RawEntity:
    """An entity as the model wrote it."""

    type: str
    text: str


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


def build_schema(config: ExtractionConfig) -> dict[str, Any]:
    """The JSON schema every response must follow (bounded list, bounded strings)."""
    return {
        "type": "object",
        "properties": {
            "entities": {
                "type": "array",
                "maxItems": config.max_entities_per_chunk,
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": config.type_names},
                        "text": {"type": "string", "minLength": 1, "maxLength": config.max_entity_chars},
                    },
                    "required": ["type", "text"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["entities"],
        "additionalProperties": False,
    }


def build_instructions(types: Sequence[EntityType]) -> str:
    """The shared instruction text (identical for every chunk of a run: it is the cached prefix)."""
    lines = [
        "You extract named entities from legal and business documents.",
        'Return JSON of the form {"entities": [{"type": TYPE, "text": TEXT}, ...]}.',
        "Copy each entity's text exactly as it appears in the document; do not paraphrase, translate "
        "or invent. List each distinct mention once. Return an empty list when there are none.",
        "Entity types:",
    ]
    for t in types:
        lines.append(f"- {t.name}: {t.description}" if t.description else f"- {t.name}")
    return "\n".join(lines)


def build_messages(instructions: str, chunk_text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": instructions},
        {"role": "user", "content": "Document:\n" + chunk_text},
    ]


def parse_response(content: str, allowed: Iterable[str]) -> tuple[list[RawEntity], str | None]:
    """Entities from a response, and an error note when the JSON was incomplete or invalid.

    A response cut off mid-way (``finish_reason == "length"``) still yields every complete entity.
    """
    allowed_set = set(allowed)
    note: str | None = None
    try:
        data: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        note = "response JSON was incomplete; complete entities were kept"
        data = _partial_json(content)
    items = data.get("entities") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return [], note or "response had no entities list"
    out: list[RawEntity] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        etype, text = item.get("type"), item.get("text")
        if isinstance(etype, str) and isinstance(text, str) and etype in allowed_set and text.strip():
            out.append(RawEntity(etype, text))
    return out, note


def _partial_json(content: str) -> Any:
    try:
        from partial_json_parser import Allow, loads
    except ImportError:  # pragma: no cover - a core dependency
        return None
    try:
        # A string cut mid-way is left out (not kept half-written), so an entity whose text was
        # cut has no text and is dropped; complete strings in an unclosed object are kept.
        return loads(content, Allow.ALL & ~Allow.STR)
    except Exception:  # noqa: BLE001 - anything unparseable just yields nothing
        return None


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
