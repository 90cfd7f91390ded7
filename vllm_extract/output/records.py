"""The output record: one JSON object per line of the output file, the product's interface.

    Record                      one input item: a document, or an input that could not become one
    ├── error: ErrorInfo        why it failed (``status == "error"``): ``kind`` and ``message``
    │   └── kind: ErrorKind     every kind of per-document failure, one enumeration
    ├── entities: [EntityRecord]
    └── usage: Usage            tokens this document's requests took

The model is defined once here; the writer validates every record against it, ``read_records``
and the resume scan validate every line they read, and ``schema/record.schema.json`` is generated
from it (``python -m vllm_extract.output schema/record.schema.json``; a test fails when the
committed file is stale).

Decisions:

- **Extra fields are forbidden** (``additionalProperties: false``). A field added to the pipeline
  but not to the contract fails every test that writes it, instead of leaking into the interface
  undocumented. The cost is forward compatibility: an older vllm-extract cannot read a file written
  by a newer one that added a field. That is acceptable: resume and reuse only accept records of
  the same fingerprint, which includes the vllm-extract version, and consumers read with the
  schema of the version that wrote the file (adding a field is a CHANGELOG entry).
- **Absent, never null.** An optional field that does not apply is left out of the line;
  ``"line": null`` is not a valid record (the schema says so too). ``Record.from_dict`` (the
  writer's entry) drops ``None`` values of the record's own fields; ``metadata`` is kept verbatim,
  nulls included.
- **Strict types.** ``"index": "3"`` or ``1.0`` is not an index (pydantic strict mode on JSON).
- ``to_json_bytes()`` is canonical: fields in the order declared below, no ``None`` fields, UTF-8
  (not ``\\u`` escapes), one line without its newline. ``parse_record(r.to_json_bytes()) == r``.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError, model_validator
from pydantic.json_schema import SkipJsonSchema

from ..exceptions import RecordError, UnencodableRecordError

__all__ = [
    "ERROR_KIND_DOCS",
    "EntityRecord",
    "ErrorInfo",
    "ErrorKind",
    "Record",
    "RecordError",
    "Status",
    "UnencodableRecordError",
    "Usage",
    "error_kinds_markdown",
    "parse_record",
    "record_fields_markdown",
    "record_json_schema",
    "records_markdown",
    "render_record_schema",
    "text_sha256",
]

Status = Literal["ok", "error"]
_SHA256 = r"^[0-9a-f]{64}$"
_FINGERPRINT = r"^[0-9a-f]{16}$"
SCHEMA_COMMAND = "python -m vllm_extract.output schema/record.schema.json"


class ErrorKind(StrEnum):
    """Why a document has ``status: "error"``. Values are stable: scripts match on them.

    To add a kind: add a member here and its line in ``ERROR_KIND_DOCS``, then regenerate the
    schema (``SCHEMA_COMMAND``). ``tests/test_records.py`` scans the readers and the pipeline for
    kinds they produce and fails on one missing here.
    """

    # A JSONL line
    MALFORMED_JSON = "malformed_json"
    NOT_OBJECT = "not_object"
    MISSING_TEXT = "missing_text"
    TEXT_NOT_STRING = "text_not_string"
    EMPTY_TEXT = "empty_text"
    LINE_TOO_LONG = "line_too_long"
    NOT_UTF8 = "not_utf8"
    # Any file or folder
    UNREADABLE = "unreadable"
    NOT_A_FILE = "not_a_file"
    EMPTY = "empty"
    SYMLINK_LOOP = "symlink_loop"
    # A text file
    BINARY = "binary"
    # A converted document (PDF, DOCX, HTML)
    MISSING_EXTRA = "missing_extra"
    CORRUPT = "corrupt"
    ENCRYPTED = "encrypted"
    TOO_LARGE = "too_large"
    NO_TEXT_LAYER = "no_text_layer"
    NOT_A_ZIP = "not_a_zip"
    # Extraction
    CONTEXT_OVERFLOW = "context_overflow"
    GENERATION_FAILED = "generation_failed"
    POISON_REQUEST = "poison_request"
    UNPARSABLE_RESPONSE = "unparsable_response"
    # The writer
    INTERNAL = "internal"


# (where it arises, what it means): the README table and the schema's description come from here.
ERROR_KIND_DOCS: dict[ErrorKind, tuple[str, str]] = {
    ErrorKind.MALFORMED_JSON: ("JSONL line", "the line is not valid JSON"),
    ErrorKind.NOT_OBJECT: ("JSONL line", "the line is JSON but not an object (an array, a string, ...)"),
    ErrorKind.MISSING_TEXT: ("JSONL line", "the object has no text field (`text_field`, default `text`)"),
    ErrorKind.TEXT_NOT_STRING: ("JSONL line", "the text field is not a string"),
    ErrorKind.EMPTY_TEXT: (
        "JSONL line",
        "the text field is empty, or only whitespace and invisible characters (zero-width space, soft hyphen, ...)",
    ),
    ErrorKind.LINE_TOO_LONG: ("JSONL line", "the line is over `max_line_bytes`; it is skipped unread"),
    ErrorKind.NOT_UTF8: ("JSONL line, text file", "the bytes are not UTF-8 (UTF-16 included)"),
    ErrorKind.UNREADABLE: ("any file or folder", "it cannot be read or listed (permissions, I/O error, broken link)"),
    ErrorKind.NOT_A_FILE: ("file in a folder", "a FIFO, socket or device: never opened, so the run cannot hang"),
    ErrorKind.EMPTY: ("any file", "the file holds no text (0 bytes, only whitespace or a BOM, no lines)"),
    ErrorKind.SYMLINK_LOOP: (
        "folder",
        "a link leads back to a folder that holds it (a loop); skipped. A folder reached again through a "
        "sibling link is read once, under its first name, and is no error",
    ),
    ErrorKind.BINARY: ("text file", "a NUL byte anywhere in the file: not text"),
    ErrorKind.MISSING_EXTRA: ("PDF, DOCX, HTML", "reading it needs the docs extra: `pip install 'vllm-extract[docs]'`"),
    ErrorKind.CORRUPT: ("PDF, DOCX, HTML", "the file is damaged, or not the format its suffix says"),
    ErrorKind.ENCRYPTED: ("PDF, DOCX", "a password is needed to open it"),
    ErrorKind.TOO_LARGE: ("DOCX", "a part is over the decompression guard (zip bomb)"),
    ErrorKind.NO_TEXT_LAYER: ("PDF", "pages are images only (scanned); run OCR first, it is out of scope"),
    ErrorKind.NOT_A_ZIP: ("DOCX", "not a ZIP container: an old .doc, RTF or HTML renamed .docx"),
    ErrorKind.CONTEXT_OVERFLOW: ("extraction", "a prompt cannot fit the model's context even for one character"),
    ErrorKind.GENERATION_FAILED: (
        "extraction",
        "requests for some chunks failed after retries; entities of the other chunks are kept",
    ),
    ErrorKind.POISON_REQUEST: (
        "extraction",
        "a request of this document killed a fresh engine again, alone (see the engine log); entities of the "
        "other chunks are kept",
    ),
    ErrorKind.UNPARSABLE_RESPONSE: (
        "extraction",
        "the model's answer for some chunks held no `entities` list (prose, other JSON, or cut off before "
        "the list began), so nothing is known about them; entities of the other chunks are kept. "
        '`{"entities": []}` is an answer (nothing found). `--reuse` extracts the document again; '
        "`--resume` keeps it, as it keeps every error record",
    ),
    ErrorKind.INTERNAL: (
        "writer",
        "the record broke this contract and was replaced by this error record (a bug: please report it)",
    ),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ErrorInfo(_Model):
    """Why a document failed."""

    kind: ErrorKind = Field(description="What went wrong; one of the kinds listed in the README.")
    message: str = Field(description="What happened to this document, for people (not stable: do not match on it).")


class Usage(_Model):
    """Tokens this document's requests took (retries included)."""

    prompt_tokens: NonNegativeInt = Field(description="Prompt tokens sent, over all chunks, retries and passes.")
    completion_tokens: NonNegativeInt = Field(
        description="Completion tokens generated, over all chunks, retries and passes."
    )


class EntityRecord(_Model):
    """One entity found in the document."""

    type: str = Field(description="Entity type (one of the configured entity types).")
    text: str = Field(description="The entity as it appears in the text: `text[start:end]` when grounded.")
    start: int = Field(ge=-1, description="Start offset in the document text, in code points (-1: ungrounded).")
    end: int = Field(ge=-1, description="End offset (exclusive), in code points; `end >= start` (-1: ungrounded).")
    grounded: Literal[False] | SkipJsonSchema[None] = Field(
        default=None,
        description="Present (false) only for an entity the model listed that is nowhere in its chunk "
        "(kept with `keep_ungrounded`); `start` and `end` are then -1.",
    )
    page: PositiveInt | SkipJsonSchema[None] = Field(
        default=None, description="1-based page holding the entity, for converted documents with pages."
    )

    @model_validator(mode="after")
    def _span(self) -> EntityRecord:
        if self.grounded is False:
            if (self.start, self.end) != (-1, -1):
                raise ValueError("an ungrounded entity has start and end -1")
        elif self.start < 0 or self.end < self.start:
            raise ValueError(f"entity span [{self.start}, {self.end}) is not a span of the text")
        return self


class Record(_Model):
    """One output line: one input item (a document, or an input that could not become one)."""

    id: str = Field(
        description="The document's id: the JSONL id field (a number exactly as written, "
        "`18446744073709551616` or `2.50`), else `SOURCE:LINE`; a file's path."
    )
    index: NonNegativeInt = Field(
        description="0-based position in the input. Records are in input order: in a whole run's (or a "
        "merged) output line N holds index N-1; a shard output holds its shard's documents and an "
        "`--errors` file the failed ones, so there indexes skip."
    )
    source: str = Field(description="The file it came from (`<stdin>` for standard input).")
    line: PositiveInt | SkipJsonSchema[None] = Field(
        default=None, description="1-based line in `source`, for a JSONL document."
    )
    duplicate_id: Literal[True] | SkipJsonSchema[None] = Field(
        default=None, description="Present (true) when an earlier item of this run had the same id."
    )
    reused: Literal[True] | SkipJsonSchema[None] = Field(
        default=None,
        description="Present (true) when the record was copied from an earlier output (`--reuse`) "
        "instead of extracted again; `usage` is then the earlier run's.",
    )
    text_sha256: str | SkipJsonSchema[None] = Field(
        default=None,
        pattern=_SHA256,
        description="Hex SHA-256 of the document text as read (UTF-8). Absent when no text could be read.",
    )
    line_sha256: str | SkipJsonSchema[None] = Field(
        default=None,
        pattern=_SHA256,
        description="For a JSONL line that could not become a document: hex SHA-256 of the line's bytes "
        "as read (without its newline), so `--resume` notices when the line changed.",
    )
    fingerprint: str = Field(
        pattern=_FINGERPRINT,
        description="The run's fingerprint: a hash of everything that changes results (model and its "
        "files, dtype, decoding, instructions, schema, entity types, chunking, budgets, version).",
    )
    status: Status = Field(description="`ok`, or `error` (then `error` says why).")
    error: ErrorInfo | SkipJsonSchema[None] = Field(default=None, description="Why it failed (`status: error` only).")
    entities: list[EntityRecord] | SkipJsonSchema[None] = Field(
        default=None,
        description="Entities found, in text order. Always present when `status` is `ok`; also on a "
        "`generation_failed`, `poison_request` or `unparsable_response` error (the chunks that succeeded).",
    )
    chunks: NonNegativeInt | SkipJsonSchema[None] = Field(
        default=None, description="Chunks the document was split into (requests sent, retries aside)."
    )
    usage: Usage | SkipJsonSchema[None] = Field(
        default=None,
        description="Tokens this document's requests took: every chunk, the retry of a cut answer and "
        "every further pass included (a request that failed outright counts nothing).",
    )
    ungrounded: NonNegativeInt | SkipJsonSchema[None] = Field(
        default=None, description="Entities the model listed that are nowhere in their chunk (dropped unless kept)."
    )
    truncated_chunks: list[NonNegativeInt] | SkipJsonSchema[None] = Field(
        default=None, description="Chunks whose answer was cut at the completion budget (partial entities kept)."
    )
    warnings: list[str] | SkipJsonSchema[None] = Field(
        default=None, description="Notes on this document that did not fail it (e.g. a repaired answer)."
    )
    metadata: dict[str, Any] | SkipJsonSchema[None] = Field(
        default=None,
        description="The JSONL line's other fields, or a file's facts (`file_size`, `modified`, `title`, ...). "
        "Integers beyond 64 bits come back as floats (orjson's rule): quote them to keep every digit.",
    )
    text: str | SkipJsonSchema[None] = Field(
        default=None,
        description="The document text, for converted documents (PDF, DOCX, HTML) whose text is not the "
        "file's bytes: entity offsets index into it.",
    )
    text_path: str | SkipJsonSchema[None] = Field(
        default=None,
        description="With `--texts DIR`, instead of `text`: the stored copy of the converted text, "
        "`DIR/<text_sha256>.txt` (UTF-8).",
    )
    pages: list[tuple[NonNegativeInt, NonNegativeInt]] | SkipJsonSchema[None] = Field(
        default=None,
        description="For paged converted documents: `[start, end)` of each page in `text`; page 1 first.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Record:
        if self.status == "ok":
            if self.error is not None:
                raise ValueError("a record with status 'ok' has no 'error'")
            if self.entities is None:
                raise ValueError("a record with status 'ok' has 'entities' (maybe empty)")
        elif self.error is None:
            raise ValueError("a record with status 'error' says why in 'error'")
        if self.pages is not None:
            previous = 0
            for number, (start, end) in enumerate(self.pages, 1):
                if start > end or start < previous:
                    raise ValueError(f"page {number} span [{start}, {end}) is reversed or overlaps the page before")
                previous = end
            for entity in self.entities or ():
                if entity.page is not None and entity.page > len(self.pages):
                    raise ValueError(f"entity on page {entity.page}, but the document has {len(self.pages)} pages")
        return self

    # -- reading and writing -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """Validate a record built as a dict (the pipeline's form). ``None`` values of the record's
        own fields mean "absent" and are dropped. Raises ``UnencodableRecordError`` when a value
        cannot be JSON (lone surrogates, a non-JSON type), ``RecordError`` when it breaks the
        contract."""
        clean = {k: v for k, v in data.items() if not (v is None and k in cls.model_fields)}
        try:
            raw = orjson.dumps(clean)
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            raise UnencodableRecordError(f"record cannot be written as JSON: {exc}") from exc
        return parse_record(raw)

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON form as Python values (no ``None`` fields; ``metadata`` verbatim)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_json_bytes(self) -> bytes:
        """The canonical output line, without its newline (see the module docstring).

        Raises ``UnencodableRecordError`` for a record constructed in Python with a str JSON
        cannot carry (``parse_record`` and ``from_dict`` never return one)."""
        try:
            return orjson.dumps(self.to_dict())
        except TypeError as exc:
            raise UnencodableRecordError(f"record cannot be written as JSON: {exc}") from exc


def text_sha256(text: str) -> str:
    """A record's ``text_sha256``: hex SHA-256 of a document's text as read (UTF-8; lone surrogates,
    from bytes that were not UTF-8, encoded as they are). The one place this hash is computed."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def parse_record(line: bytes | str, *, number: int | None = None) -> Record:
    """One output line (with or without its newline) as a ``Record``.

    Raises ``RecordError`` (with ``line=number``) when it is not JSON or not a valid record; the
    message names the first few problems by field path.
    """
    where = f"line {number}: " if number is not None else ""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"{where}not valid JSON ({exc})", line=number) from exc
    if not isinstance(obj, dict):
        raise RecordError(f"{where}a JSON {type(obj).__name__}, not an object", line=number)
    null = _null_field(obj)
    if null is not None:
        raise RecordError(f"{where}not a valid record: {null} is null (an optional field is left out)", line=number)
    try:
        return Record.model_validate_json(line if isinstance(line, bytes) else line.encode(), strict=True)
    except ValidationError as exc:
        raise RecordError(f"{where}not a valid record: {describe_validation_error(exc)}", line=number) from exc


def _null_field(obj: dict[str, Any]) -> str | None:
    """The path of the first field of the contract holding null (``metadata`` values may be null)."""
    for name, value in obj.items():
        if value is None:
            return name
    for name in ("error", "usage"):
        value = obj.get(name)
        if isinstance(value, dict):
            inner = next((k for k, v in value.items() if v is None), None)
            if inner is not None:
                return f"{name}.{inner}"
    entities = obj.get("entities")
    if isinstance(entities, list):
        for number, entity in enumerate(entities):
            if isinstance(entity, dict):
                inner = next((k for k, v in entity.items() if v is None), None)
                if inner is not None:
                    return f"entities.{number}.{inner}"
    return None


def describe_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """The first ``limit`` problems of a pydantic error on one line: ``field.path: message``."""
    problems = [p for p in exc.errors() if p["type"] != "none_required"] or exc.errors()
    parts = []
    for problem in problems[:limit]:
        # Drop pydantic's union-branch and validator names from the path: "entities.0.end".
        path = ".".join(str(p) for p in problem["loc"] if not (isinstance(p, str) and _BRANCH.search(p)))
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "enum":
            message = f"{problem['input']!r} is not a known value"
        parts.append(f"{path or 'record'}: {message}")
    more = len(problems) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


_BRANCH = re.compile(r"[\[\]]|^[A-Z]\w*$")


# -- the published schema --------------------------------------------------------------------------


def record_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one output line, generated from ``Record``."""
    schema = Record.model_json_schema(mode="validation")
    _drop_null_defaults(schema)
    kinds = "; ".join(f"{kind.value}: {ERROR_KIND_DOCS[kind][1]}" for kind in ErrorKind)
    schema["$defs"]["ErrorKind"]["description"] = f"Why a document failed. {kinds}."
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"Generated from vllm_extract/output/records.py; regenerate with: {SCHEMA_COMMAND}",
        **schema,
        "title": "vllm-extract output record",
    }


def _drop_null_defaults(node: Any) -> None:
    # Optional fields are absent, never null: a "default": null would say otherwise.
    if isinstance(node, dict):
        if "default" in node and node["default"] is None:
            del node["default"]
        for value in node.values():
            _drop_null_defaults(value)
    elif isinstance(node, list):
        for value in node:
            _drop_null_defaults(value)


def render_record_schema() -> bytes:
    """The bytes of ``schema/record.schema.json``: the schema, indented, keys sorted, newline-ended."""
    return orjson.dumps(record_json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def record_fields_markdown() -> str:
    """The README's table of record fields (``| Field | Type | Present | Meaning |``), newline-ended."""
    rows = ["| Field | Type | Present | Meaning |", "| --- | --- | --- | --- |"]
    properties = record_json_schema()["properties"]
    required = set(Record.model_json_schema()["required"])
    for name, field in Record.model_fields.items():
        kind = _type_name(properties[name])
        when = "always" if name in required else "optional"
        rows.append(f"| `{name}` | {kind} | {when} | {field.description} |")
    for model in (ErrorInfo, EntityRecord, Usage):
        prefix = {"ErrorInfo": "error", "EntityRecord": "entities[]", "Usage": "usage"}[model.__name__]
        sub = model.model_json_schema()
        for name, field in model.model_fields.items():
            when = "always" if name in sub.get("required", ()) else "optional"
            rows.append(f"| `{prefix}.{name}` | {_type_name(sub['properties'][name])} | {when} | {field.description} |")
    return "\n".join(rows) + "\n"


def error_kinds_markdown() -> str:
    """The README's table of error kinds (``| `error.kind` | Arises in | Meaning |``), newline-ended."""
    kinds = ["| `error.kind` | Arises in | Meaning |", "| --- | --- | --- |"]
    kinds += [f"| `{k.value}` | {ERROR_KIND_DOCS[k][0]} | {ERROR_KIND_DOCS[k][1]} |" for k in ErrorKind]
    return "\n".join(kinds) + "\n"


def records_markdown() -> str:
    """The README's record section body: the table of fields, a blank line, the table of error kinds."""
    return record_fields_markdown() + "\n" + error_kinds_markdown()


def _type_name(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return "object" if not prop["$ref"].endswith("ErrorKind") else "string (kind)"
    if "const" in prop:
        return f"`{str(prop['const']).lower()}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        items = prop.get("items", {})
        inner = "[start, end]" if "prefixItems" in items else _type_name(items)
        return f"array of {inner}"
    return str(kind)


def main(argv: list[str]) -> int:
    """``SCHEMA_COMMAND``: write the schema to the path given."""
    if len(argv) != 1:
        print(f"usage: {SCHEMA_COMMAND}", file=sys.stderr)
        return 2
    Path(argv[0]).write_bytes(render_record_schema())
    print(f"wrote {argv[0]}")
    return 0
