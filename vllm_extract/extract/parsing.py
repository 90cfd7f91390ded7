"""Reading the model's answer: entities from a (possibly cut-off) JSON response.

A response cut at ``max_tokens`` is still mined for its complete entities.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["RawEntity", "parse_response"]


@dataclass(frozen=True, slots=True)
class RawEntity:
    """An entity as the model wrote it."""

    type: str
    text: str


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
