"""Gold documents: the hand-labelled spans that ``eval`` scores a run against.

A gold file is JSONL, one document per line::

    {"id": "doc-1", "text": "Ann Lee sued Acme Corp.", "entities": [{"type": "PERSON", "start": 0, "end": 7}]}

* ``id`` (required): a non-empty string (an int is accepted and turned into a string); unique in the file.
* ``text`` (optional): when present, every span must lie inside it.
* ``entities`` (optional, default ``[]``): ``{"type", "start", "end"}`` with Python code-point offsets,
  ``end`` exclusive (``text[start:end]`` is the mention), the same convention as ``run`` output.
  An optional ``"text"`` on a span is checked against ``text[start:end]`` when the document has ``text``.

Any other field is ignored (so a gold file is also valid ``run`` input: only ``text`` reaches the model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeGuard, TypeVar

import orjson

from ..exceptions import InputError
from ..output.jsonl import iter_objects

__all__ = [
    "GoldDocument",
    "GoldSpan",
    "load_by_id",
    "load_gold",
    "parse_gold_document",
    "write_gold",
]


@dataclass(frozen=True)
class GoldSpan:
    """One labelled mention: ``type`` and the code-point span ``[start, end)`` of the document text."""

    type: str
    start: int
    end: int


@dataclass(frozen=True)
class GoldDocument:
    """One gold document. ``line`` is its 1-based line number in the gold file (0 when built in memory)."""

    id: str
    text: str | None
    entities: tuple[GoldSpan, ...]
    line: int

    def as_dict(self) -> dict[str, Any]:
        """The JSONL record for this document (``text`` left out when unknown)."""
        record: dict[str, Any] = {"id": self.id}
        if self.text is not None:
            record["text"] = self.text
        record["entities"] = [{"type": s.type, "start": s.start, "end": s.end} for s in self.entities]
        return record


def load_gold(path: Path) -> dict[str, GoldDocument]:
    """Read and validate a gold JSONL file; return ``{id: GoldDocument}`` in file order.

    Blank lines are skipped. Raises ``InputError`` (naming the file and line) when the file cannot
    be read, a line is not a JSON object, an id is missing or empty, a span is malformed, out of
    range or (with ``text``) does not match its own ``"text"``; and, naming every one of them, when
    ids repeat.
    """
    return load_by_id(
        path,
        lambda record, line, where: parse_gold_document(record, line=line, where=where),
        what="gold file",
        hint="every gold document needs its own id",
    )


class _Identified(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def line(self) -> int: ...


_T = TypeVar("_T", bound=_Identified)


def load_by_id(
    path: Path | str, parse: Callable[[dict[str, Any], int, str], _T], *, what: str, hint: str
) -> dict[str, _T]:
    """Read a JSONL file of documents keyed by id (gold, or a run's output); return ``{id: doc}``
    in file order. ``parse(record, line, "path:line")`` validates one line. A leading UTF-8 BOM is
    skipped, as are blank lines; the last line counts whether or not it ends with a newline (these
    files may be written by people, and JSON Lines allows it: ``output.jsonl`` calls it torn).
    Raises ``InputError`` when the file cannot be read (naming ``what``), for a bad line (naming
    it), and, naming every one of them, when ids repeat."""
    path = Path(path)
    documents: dict[str, _T] = {}
    duplicates: dict[str, list[int]] = {}
    try:
        with open(path, "rb") as stream:
            for line_no, record in iter_objects(stream, path, hint="one JSON object per line", keep_torn=True):
                doc = parse(record, line_no, f"{path}:{line_no}")
                if doc.id in documents:
                    duplicates.setdefault(doc.id, [documents[doc.id].line]).append(line_no)
                    continue
                documents[doc.id] = doc
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}", hint="check the path") from None
    if duplicates:
        named = "; ".join(f"{i!r} on lines {', '.join(map(str, lines))}" for i, lines in duplicates.items())
        raise InputError(f"{path}: duplicate ids in the {what}: {named}", hint=hint)
    return documents


def parse_gold_document(record: dict[str, Any], *, line: int = 0, where: str = "gold") -> GoldDocument:
    """Validate one gold record (a parsed JSON object) and build its ``GoldDocument``.

    ``where`` prefixes every error message (e.g. ``"gold.jsonl:3"``). Raises ``InputError``.
    """
    doc_id = record.get("id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int) or (isinstance(doc_id, str) and not doc_id):
        raise InputError(f"{where}: missing or empty 'id'", hint='each gold line needs "id": "..."')
    doc_id = str(doc_id)
    text = record.get("text")
    if text is not None and not isinstance(text, str):
        raise InputError(f"{where}: document {doc_id!r}: 'text' must be a string")
    raw_entities = record.get("entities", [])
    if raw_entities is None:
        raw_entities = []
    if not isinstance(raw_entities, list):
        raise InputError(f"{where}: document {doc_id!r}: 'entities' must be a list")
    spans: list[GoldSpan] = []
    for n, ent in enumerate(raw_entities):
        label = f"{where}: document {doc_id!r}, entity {n}"
        if not isinstance(ent, dict):
            raise InputError(f"{label}: expected an object with type, start, end")
        etype, start, end = ent.get("type"), ent.get("start"), ent.get("end")
        if not isinstance(etype, str) or not etype:
            raise InputError(f"{label}: missing or empty 'type'")
        if not _is_int(start) or not _is_int(end):
            raise InputError(f"{label}: 'start' and 'end' must be integers")
        if start < 0 or end <= start:
            raise InputError(f"{label}: bad span [{start}, {end}) (need 0 <= start < end; end is exclusive)")
        if text is not None:
            if end > len(text):
                raise InputError(
                    f"{label}: span [{start}, {end}) is out of range (text has {len(text)} characters)",
                    hint="offsets are Python code points, end exclusive",
                )
            surface = ent.get("text")
            if surface is not None and text[start:end] != surface:
                raise InputError(
                    f"{label}: span [{start}, {end}) is {text[start:end]!r} in the text but the entity says "
                    f"{surface!r}",
                    hint="offsets are Python code points, end exclusive",
                )
        spans.append(GoldSpan(etype, start, end))
    return GoldDocument(doc_id, text, tuple(spans), line)


def write_gold(documents: Iterable[GoldDocument], path: Path) -> int:
    """Write documents as gold JSONL (UTF-8, one per line); return how many were written."""
    count = 0
    with Path(path).open("wb") as fh:
        for doc in documents:
            fh.write(orjson.dumps(doc.as_dict()) + b"\n")
            count += 1
    return count


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
