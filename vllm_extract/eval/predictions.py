"""The predicted side of ``eval``: the records a ``run`` wrote (its JSONL output).

Each line is one document::

    {"id": "doc-1", "status": "ok", "entities": [{"type": "PERSON", "text": "Ann Lee", "start": 0, "end": 7}]}
    {"id": "doc-2", "status": "error", "error": {"kind": "context_overflow", "message": "..."}, "entities": []}

Only ``id``, ``status`` (default ``"ok"``), ``error`` and ``entities`` are read. An entity with
``"grounded": false`` (the model named it but it is not in the text; offsets -1) is kept as
ungrounded: it can never match a gold span.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from ..exceptions import InputError
from .gold import load_by_id

__all__ = ["PredDocument", "PredEntity", "load_predictions"]


@dataclass(frozen=True)
class PredEntity:
    """One predicted mention: ``[start, end)`` code points, end exclusive; -1/-1 when not grounded."""

    type: str
    start: int
    end: int
    grounded: bool = True


@dataclass(frozen=True)
class PredDocument:
    """One ``run`` output record. ``status`` is ``"ok"`` or ``"error"``; ``line`` is 1-based."""

    id: str
    status: str
    entities: tuple[PredEntity, ...]
    line: int
    error_kind: str | None = None


def load_predictions(path: Path) -> dict[str, PredDocument]:
    """Read a ``run`` output file; return ``{id: PredDocument}`` in file order.

    Raises ``InputError`` naming the file and line when the file cannot be read, a line is not a
    JSON object, an id is missing, ``status`` is unknown or an entity is malformed (a grounded
    entity needs ``0 <= start < end``); and, naming every one of them, when ids repeat.
    """
    return load_by_id(path, _parse_record, what="predictions", hint="give every input document its own id")


def _parse_record(record: dict[str, Any], line: int, where: str) -> PredDocument:
    doc_id = record.get("id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int) or (isinstance(doc_id, str) and not doc_id):
        raise InputError(f"{where}: missing or empty 'id'", hint="is this a `vllm-extract run` output file?")
    doc_id = str(doc_id)
    status = record.get("status", "ok")
    if status not in ("ok", "error"):
        raise InputError(f"{where}: document {doc_id!r}: unknown status {status!r} (expected 'ok' or 'error')")
    error = record.get("error")
    error_kind = error.get("kind") if isinstance(error, dict) else None
    raw_entities = record.get("entities") or []
    if not isinstance(raw_entities, list):
        raise InputError(f"{where}: document {doc_id!r}: 'entities' must be a list")
    entities: list[PredEntity] = []
    for n, ent in enumerate(raw_entities):
        label = f"{where}: document {doc_id!r}, entity {n}"
        if not isinstance(ent, dict):
            raise InputError(f"{label}: expected an object with type, start, end")
        etype, start, end = ent.get("type"), ent.get("start", -1), ent.get("end", -1)
        if not isinstance(etype, str) or not etype:
            raise InputError(f"{label}: missing or empty 'type'")
        if not _is_int(start) or not _is_int(end):
            raise InputError(f"{label}: 'start' and 'end' must be integers")
        grounded = ent.get("grounded", True) is not False and start >= 0
        if not grounded:
            entities.append(PredEntity(etype, -1, -1, grounded=False))
            continue
        if end <= start:
            raise InputError(f"{label}: bad span [{start}, {end}) (need 0 <= start < end; end is exclusive)")
        entities.append(PredEntity(etype, start, end))
    return PredDocument(doc_id, status, tuple(entities), line, str(error_kind) if error_kind is not None else None)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
