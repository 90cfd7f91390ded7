"""The review page's data: output records joined with their texts and gold spans, as one JSON-ready dict.

Each record's text is, in order: the record's own ``text`` (converted PDFs carry it: the offsets
refer to exactly that text), else the matching input document (``--inputs``, matched by index and
id, then by id alone when it is unique), else the gold document's ``text``. A record carrying
``text_sha256`` is checked against that text; a mismatch raises ``InputError`` naming the
document, because its offsets would point at the wrong characters.

Offsets stay Python code points, as in the output file; the page converts them to the browser's
UTF-16 units when it draws a document.

The payload (``build_review_data``) keeps each document small: entities are lists
``[type_index, start, end, mark]`` plus, where the page cannot take it from the text, the surface
string. ``mark`` is one of ``NO_GOLD``, ``MATCH``, ``FALSE_POSITIVE`` or ``MISSED`` (a gold span no
prediction matched, drawn from the gold file).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from ..eval.gold import GoldDocument
from ..exceptions import InputError
from ..output.jsonl import iter_objects
from ..output.records import text_sha256
from ..readers import Document, iter_documents

__all__ = [
    "FALSE_POSITIVE",
    "MATCH",
    "MISSED",
    "NO_GOLD",
    "InputTexts",
    "ReviewStats",
    "build_review_data",
    "read_output_records",
]

NO_GOLD, MATCH, FALSE_POSITIVE, MISSED = 0, 1, 2, 3

# Metadata shown in a document's header: scalar fields only, each value cut to this many characters.
_MAX_METADATA_FIELDS = 12
_MAX_METADATA_CHARS = 300


@dataclass(frozen=True, slots=True)
class ReviewStats:
    """What went into a review page (the CLI prints it; tests read it)."""

    documents: int
    entities: int
    errors: int
    without_text: int
    gold_documents: int = 0
    gold_not_in_output: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def read_output_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each record of a ``run`` output file.

    Blank lines are skipped and a torn last line (a run still writing) is ignored, as ``--resume``
    does (``output.jsonl``). Any other line that is not a JSON object raises ``InputError`` naming
    the file and line.
    """
    path = Path(path)
    hint = "pass the --out file of a run"
    try:
        with open(path, "rb") as stream:
            yield from iter_objects(stream, path, hint=hint)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", hint=hint) from None


class InputTexts:
    """Document texts read from ``--inputs`` (the same arguments ``run`` took), looked up per record."""

    def __init__(self, documents: Iterable[Document]) -> None:
        self._by_index: dict[int, Document] = {}
        self._by_id: dict[str, Document | None] = {}
        for doc in documents:
            self._by_index[doc.index] = doc
            # None marks an id that repeats: it cannot pick one text on its own.
            self._by_id[doc.id] = None if doc.id in self._by_id else doc

    @classmethod
    def read(
        cls,
        inputs: Sequence[str],
        *,
        id_field: str = "id",
        text_field: str = "text",
        globs: Iterable[str] = ("*.txt", "*.md"),
        max_line_bytes: int = 64 * 1024 * 1024,
    ) -> InputTexts:
        """Read every document of ``inputs`` with ``iter_documents``; bad inputs have no text."""
        items = iter_documents(
            inputs, id_field=id_field, text_field=text_field, globs=globs, max_line_bytes=max_line_bytes
        )
        return cls(item for item in items if isinstance(item, Document))

    def __len__(self) -> int:
        return len(self._by_index)

    def lookup(self, doc_id: str, index: Any) -> Document | None:
        """The input document for a record: same index and id, else the only document with that id."""
        if isinstance(index, int) and not isinstance(index, bool):
            doc = self._by_index.get(index)
            if doc is not None and doc.id == doc_id:
                return doc
        return self._by_id.get(doc_id)


def build_review_data(
    records: Iterable[tuple[int, dict[str, Any]]],
    *,
    source_name: str,
    texts: InputTexts | None = None,
    gold: Mapping[str, GoldDocument] | None = None,
    types: Sequence[str] | None = None,
) -> tuple[dict[str, Any], ReviewStats]:
    """Join records with texts and gold into the page's payload; return it with its ``ReviewStats``.

    ``records`` are ``(line_number, record)`` pairs (``read_output_records``). ``types`` keeps only
    those entity types, on both the predicted and the gold side, and fixes their colour order;
    without it types are ordered by how often they occur. Raises ``InputError`` when a record's
    ``text_sha256`` does not match its text.
    """
    keep = set(types) if types else None
    docs: list[dict[str, Any]] = []
    type_counts: Counter[str] = Counter()
    status_counts: Counter[str] = Counter()
    totals = Counter({"tp": 0, "fp": 0, "fn": 0})
    warnings: list[str] = []
    seen_ids: set[str] = set()
    entities = errors = without_text = unmatched = 0

    for line_no, record in records:
        doc, predicted, missed = _document(record, line_no, source_name, texts, gold, keep)
        docs.append(doc)
        seen_ids.add(doc["id"])
        status_counts[doc["st"]] += 1
        errors += doc["st"] != "ok"
        without_text += doc["text"] is None
        unmatched += doc["text"] is None and doc["st"] == "ok"
        entities += len(predicted)
        type_counts.update(t for t, _, _, _ in predicted)
        type_counts.update({t: 0 for t, _, _ in missed})
        if doc["gold"] is not None:
            totals.update({k: doc["gold"][k] for k in ("tp", "fp", "fn")})

    order = list(types) if types else [t for t, _ in sorted(type_counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    order += sorted(t for t in type_counts if t not in order)
    index = {t: i for i, t in enumerate(order)}
    for doc in docs:
        doc["ents"] = [[index[e[0]], *e[1:]] for e in doc["ents"]]

    if texts is not None and unmatched:
        warnings.append(
            f"{unmatched} document(s) have no text: no document of --inputs has their id "
            "(pass the INPUT arguments of the run, with the same --id-field)"
        )
    gold_missing: tuple[str, ...] = ()
    summary: dict[str, Any] = {
        "types": [type_counts.get(t, 0) for t in order],
        "status": dict(sorted(status_counts.items(), key=lambda kv: (kv[0] != "ok", kv[0]))),
        "withoutText": without_text,
    }
    if gold is not None:
        gold_missing = tuple(doc_id for doc_id in gold if doc_id not in seen_ids)
        summary["gold"] = dict(totals) | _scores(totals["tp"], totals["fp"], totals["fn"])
        summary["goldNotInOutput"] = len(gold_missing)
        if gold_missing:
            warnings.append(f"{len(gold_missing)} gold document(s) have no record in {source_name}")
    payload = {
        "title": f"vllm-extract review: {source_name}",
        "source": source_name,
        "types": order,
        "hasGold": gold is not None,
        "summary": summary,
        "warnings": warnings,
        "docs": docs,
    }
    stats = ReviewStats(
        documents=len(docs),
        entities=entities,
        errors=errors,
        without_text=without_text,
        gold_documents=len(gold) if gold is not None else 0,
        gold_not_in_output=gold_missing,
        warnings=tuple(warnings),
    )
    return payload, stats


def _document(
    record: dict[str, Any],
    line_no: int,
    source_name: str,
    texts: InputTexts | None,
    gold: Mapping[str, GoldDocument] | None,
    keep: set[str] | None,
) -> tuple[dict[str, Any], list[tuple[str, int, int, str | None]], list[tuple[str, int, int]]]:
    raw_id = record.get("id")
    doc_id = str(raw_id) if raw_id is not None and raw_id != "" else f"{source_name}:{line_no}"
    status = str(record.get("status") or "unknown")
    gold_doc = gold.get(doc_id) if gold is not None else None
    text, origin = _text_for(record, doc_id, texts, gold_doc)
    notes: list[str] = []
    expected = record.get("text_sha256")
    if isinstance(expected, str) and text is not None and text_sha256(text) != expected.strip().lower():
        raise InputError(
            f"{source_name}:{line_no}: document {doc_id!r}: the text from {origin} does not match the "
            f"record's text_sha256 (offsets would point at the wrong characters)",
            hint="review with the same inputs the run read",
        )

    predicted: list[tuple[str, int, int, str | None]] = []
    raw_entities = record.get("entities")
    for ent in raw_entities if isinstance(raw_entities, list) else []:
        if not isinstance(ent, dict) or not isinstance(ent.get("type"), str):
            continue
        if keep is not None and ent["type"] not in keep:
            continue
        raw_start, raw_end = ent.get("start"), ent.get("end")
        surface = ent.get("text") if isinstance(ent.get("text"), str) else None
        start, end = -1, -1
        if _is_int(raw_start) and _is_int(raw_end) and ent.get("grounded") is not False:
            start, end = raw_start, raw_end
        predicted.append((ent["type"], start, end, surface))

    gold_spans = [] if gold_doc is None else [s for s in gold_doc.entities if keep is None or s.type in keep]
    marks, missed, scores = _compare(predicted, gold_spans if gold_doc is not None else None)

    ents: list[list[Any]] = []
    mismatched = out_of_range = 0
    for (etype, start, end, surface), mark in zip(predicted, marks, strict=True):
        drawable = text is not None and 0 <= start < end <= len(text)
        if text is not None and start >= 0 and not drawable:
            out_of_range += 1
        entry: list[Any] = [etype, start, end, mark]
        if not drawable:
            entry.append(surface or "")
        elif surface is not None and text is not None and text[start:end] != surface:
            mismatched += 1
            entry.append(surface)
        ents.append(entry)
    for etype, start, end in missed:
        drawable = text is not None and end <= len(text)
        ents.append([etype, start, end, MISSED] if drawable else [etype, start, end, MISSED, ""])

    if gold_doc is not None and gold_doc.text is not None and text is not None and gold_doc.text != text:
        notes.append("the gold file's text for this document differs from the text shown: its spans may not line up")
    if out_of_range:
        notes.append(f"{out_of_range} entity span(s) lie outside the text ({len(text or '')} characters)")
    if mismatched:
        notes.append(
            f"{mismatched} entity text(s) differ from the document at their offsets: is this the text the run read?"
        )
    warnings = record.get("warnings")
    if isinstance(warnings, list):
        notes.extend(str(w) for w in warnings)
    truncated = record.get("truncated_chunks")
    if isinstance(truncated, list) and truncated:
        notes.append(f"response cut at max_tokens in chunk(s) {', '.join(map(str, truncated))}")
    if record.get("duplicate_id"):
        notes.append("another document in this output has the same id")
    ungrounded = record.get("ungrounded")
    if _is_int(ungrounded) and ungrounded > 0:
        notes.append(f"{ungrounded} entity(ies) named by the model were not found in the text and were dropped")

    error = record.get("error")
    error_text = None
    if isinstance(error, dict):
        kind, message = error.get("kind"), error.get("message")
        error_text = f"{kind}: {message}" if kind else str(message)
    elif error is not None:
        error_text = str(error)

    doc: dict[str, Any] = {
        "id": doc_id,
        "i": record.get("index") if _is_int(record.get("index")) else None,
        "src": str(record.get("source") or ""),
        "st": status,
        "err": error_text,
        "text": text,
        "from": origin,
        "ents": ents,
        "notes": notes,
        "meta": _metadata(record.get("metadata")),
        "gold": scores,
    }
    return doc, predicted, missed


def _text_for(
    record: dict[str, Any], doc_id: str, texts: InputTexts | None, gold_doc: GoldDocument | None
) -> tuple[str | None, str]:
    own = record.get("text")
    if isinstance(own, str):
        return own, "the record"
    if texts is not None:
        found = texts.lookup(doc_id, record.get("index"))
        if found is not None:
            where = found.source if found.line is None else f"{found.source}:{found.line}"
            return found.text, f"the inputs ({where})"
    if gold_doc is not None and gold_doc.text is not None:
        return gold_doc.text, "the gold file"
    if texts is None:
        return None, "no text: the record has none; pass --inputs (the run's INPUT arguments) to see it"
    return None, "no text: no input document has this id"


def _compare(
    predicted: list[tuple[str, int, int, str | None]], gold_spans: list[Any] | None
) -> tuple[list[int], list[tuple[str, int, int]], dict[str, Any] | None]:
    """Strict matching (same type, start and end; each gold span used once): marks, missed spans, scores."""
    if gold_spans is None:
        return [NO_GOLD] * len(predicted), [], None
    remaining = Counter((s.type, s.start, s.end) for s in gold_spans)
    marks: list[int] = []
    for etype, start, end, _ in predicted:
        key = (etype, start, end)
        if start >= 0 and remaining[key] > 0:
            remaining[key] -= 1
            marks.append(MATCH)
        else:
            marks.append(FALSE_POSITIVE)
    missed = sorted((key for key, n in remaining.items() for _ in range(n)), key=lambda k: (k[1], -k[2], k[0]))
    tp = marks.count(MATCH)
    fp = len(marks) - tp
    return marks, missed, {"tp": tp, "fp": fp, "fn": len(missed)} | _scores(tp, fp, len(missed))


def _scores(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    """Precision, recall and F1; None where undefined (nothing predicted, nothing in gold)."""
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"p": precision, "r": recall, "f1": f1}


def _metadata(metadata: Any) -> list[list[str]]:
    if not isinstance(metadata, dict):
        return []
    out: list[list[str]] = []
    for key, value in metadata.items():
        if len(out) >= _MAX_METADATA_FIELDS:
            break
        if isinstance(value, str | int | float | bool) and value != "":
            text = str(value)
            if len(text) > _MAX_METADATA_CHARS:
                text = text[: _MAX_METADATA_CHARS - 1] + "…"
            out.append([str(key), text])
    return out


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
