"""Reading the model's answer: entities from a (possibly cut-off) JSON response.

A response cut at ``max_tokens`` is still mined for its complete entities. Servers that return
free text may wrap the JSON in a Markdown code fence or put prose before or after it (issue #12);
the first JSON object holding an ``entities`` list is read and the rest ignored.

An answer with no ``entities`` list at all (prose, an apology, other JSON, or an answer cut off
before its list began) is ``unparsable``: the run makes its document an ``unparsable_response``
error record, never an ``ok`` record with no entities, which would read as "nothing found" and be
copied by ``--reuse`` for good. ``{"entities": []}`` is an answer (nothing found), and so is a
cut-off answer whose list began (its complete entities are kept, however few).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

__all__ = ["ParsedResponse", "RawEntity", "parse_response"]


@dataclass(frozen=True, slots=True)
class RawEntity:
    """An entity as the model wrote it."""

    type: str
    text: str


_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\r?\n?(.*?)(?:```|\Z)", re.DOTALL)
_DECODER = json.JSONDecoder()
# How many "{" positions are tried when looking for the JSON object inside free text.
_MAX_STARTS = 20

_INCOMPLETE = "response JSON was incomplete; complete entities were kept"
_NO_LIST = "response had no entities list"
_NOT_JSON = "response is not JSON and holds no entities list"
_CUT_BEFORE_LIST = "response JSON was incomplete and had no entities list"


class ParsedResponse(NamedTuple):
    """What a response holds: ``entities`` and ``note`` (None, or what was wrong). Unpacks as
    ``entities, note``."""

    entities: list[RawEntity]
    note: str | None

    @property
    def unparsable(self) -> bool:
        """No ``entities`` list could be read, not even a cut-off one: the answer says nothing
        about the text (see the module docstring)."""
        return self.note in (_NO_LIST, _NOT_JSON, _CUT_BEFORE_LIST)


def parse_response(content: str, allowed: Iterable[str]) -> ParsedResponse:
    """Entities from a response, and an error note when the JSON was incomplete or invalid.

    ``content`` is the response text; ``allowed`` the configured type names (others are dropped,
    as are items without a string ``type`` and a non-blank string ``text``). Returns the entities
    in the model's order and ``None``, or a note saying what was wrong; ``unparsable`` when no
    entities list was found. Never raises.

    Read in turn: the whole text as JSON; else the inside of a Markdown code fence (closed or not)
    and the first JSON object in the text that has an ``entities`` list, with any text around it
    ignored (no note: the entities are all there); else the complete entities of a response cut
    off mid-way (``finish_reason == "length"``), from its first ``{``.
    """
    allowed_set = set(allowed)
    note: str | None = None
    try:
        data: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = _embedded_json(content)
        if data is None:
            note = _INCOMPLETE
            data = _partial_json(_unfenced(content))
    items = data.get("entities") if isinstance(data, dict) else None
    if not isinstance(items, list):
        if note is None:
            return ParsedResponse([], _NO_LIST)  # JSON, but not an answer
        # A cut-off object ("{" found, the partial parse gave a dict) or no JSON at all.
        return ParsedResponse([], _CUT_BEFORE_LIST if isinstance(data, dict) else _NOT_JSON)
    out: list[RawEntity] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        etype, text = item.get("type"), item.get("text")
        if isinstance(etype, str) and isinstance(text, str) and etype in allowed_set and text.strip():
            out.append(RawEntity(etype, text))
    return ParsedResponse(out, note)


def _unfenced(content: str) -> str:
    """The inside of the first Markdown code fence, or ``content`` from its first ``{``."""
    fence = _FENCE.search(content)
    if fence is not None and "{" in fence.group(1):
        content = fence.group(1)
    start = content.find("{")
    return content[start:] if start >= 0 else content


def _embedded_json(content: str) -> dict[str, Any] | None:
    """The first complete JSON object with an ``entities`` list inside fenced or free text."""
    for text in dict.fromkeys((_unfenced(content), content)):
        pos = text.find("{")
        for _ in range(_MAX_STARTS):
            if pos < 0:
                break
            try:
                value, _end = _DECODER.raw_decode(text, pos)
            except ValueError:
                value = None
            if isinstance(value, dict) and isinstance(value.get("entities"), list):
                return value
            pos = text.find("{", pos + 1)
    return None


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
