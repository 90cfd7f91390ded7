"""Reusing earlier records safely: ``--resume`` (finish the same run) and ``--reuse`` (copy what
still matches from earlier outputs into a new run).

``--resume`` continues one run: a record already in the output is kept only when the input at its
position has the same id and the same text (for a bad JSONL line, which has no text, the same
line: ``line_sha256``), and the settings have the same fingerprint. Anything
else would mix two runs in one file, so ``ResumeGuard`` refuses (``OutputError``, exit 2) and says
what changed: the settings (by name when the earlier run's settings were saved beside the output,
``OUT.run.json``), the first document that differs, or documents removed.

``--reuse PREVIOUS.jsonl`` is advisory: ``ReuseIndex`` indexes the ``ok`` records of earlier
outputs by (id, text_sha256, fingerprint); a document whose key matches is copied instead of
extracted. A damaged line in a reuse file is skipped with one warning (the cost is only that this
document is extracted again). Error records are never reused: a transient failure would otherwise
outlive its cause, and a deterministic one costs no generation to reproduce.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..exceptions import InputError, OutputError
from .files import atomic_write, run_settings_path, same_file
from .jsonl import read_lines
from .records import Record, RecordError, Status, parse_record

__all__ = [
    "PIN_DTYPE_HINT",
    "DoneRecord",
    "ResumeGuard",
    "ReuseIndex",
    "check_resume",
    "describe_settings_change",
    "dtype_change",
    "read_run_settings",
    "same_path",
    "write_run_settings",
]

logger = logging.getLogger(__name__)

_RESUME_HINT = "rerun with --overwrite, or write to a new --out and pass --reuse OLD.jsonl to keep what still matches"


@dataclass(frozen=True, slots=True)
class DoneRecord:
    """What the resume scan keeps of one record already in the output.

    ``line`` is its 1-based line in the file; ``text_sha256`` is None for an input that had no
    text (a bad input); ``from_line`` says whether it came from a JSONL line (``line`` field);
    ``line_sha256`` is the hash of a bad JSONL line (its identity, as it has no text).
    """

    id: str
    text_sha256: str | None
    fingerprint: str
    status: Status
    line: int
    from_line: bool = False
    line_sha256: str | None = None

    @classmethod
    def of(cls, record: Record, line: int) -> DoneRecord:
        """The ``DoneRecord`` of a validated record found on ``line`` of the output."""
        return cls(
            record.id,
            record.text_sha256,
            record.fingerprint,
            record.status,
            line,
            record.line is not None,
            record.line_sha256,
        )


# -- the run's settings beside the output --------------------------------------------------------


def write_run_settings(out: Path | str, fingerprint: str, settings: Mapping[str, Any]) -> None:
    """Save the run's fingerprint and the settings it hashes (any JSON-able mapping) beside ``out``,
    atomically, so a later ``--resume`` can name the setting that changed."""
    data = {"fingerprint": fingerprint, "settings": dict(settings)}
    atomic_write(run_settings_path(out), orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def read_run_settings(out: Path | str) -> tuple[str, dict[str, Any]] | None:
    """``(fingerprint, settings)`` saved beside ``out``, or None when absent or unreadable."""
    try:
        data = orjson.loads(run_settings_path(out).read_bytes())
        fingerprint, settings = data["fingerprint"], data["settings"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(fingerprint, str) or not isinstance(settings, dict):
        return None
    return fingerprint, settings


BATCHING_PREFIX = "batch."  # saved settings that shape batches (``plan.batching_parts``)


def _batching(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k.startswith(BATCHING_PREFIX)}


def describe_settings_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Each setting that differs, as ``"chunk_tokens 1000 -> 800"`` (short values) or
    ``"instructions changed"`` (long ones), sorted by name; a key named ``fingerprint`` is ignored."""
    changes = []
    for name in sorted(set(old) | set(new)):
        if name == "fingerprint":
            continue
        if name not in old:
            changes.append(f"{name} added ({_short(new[name])})")
        elif name not in new:
            changes.append(f"{name} removed (was {_short(old[name])})")
        elif _canonical(old[name]) != _canonical(new[name]):
            before, after = _short(old[name]), _short(new[name])
            changes.append(f"{name} {before} -> {after}" if len(before) + len(after) <= 80 else f"{name} changed")
    return changes


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _short(value: Any) -> str:
    return orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)


# -- resume ----------------------------------------------------------------------------------------


class ResumeGuard:
    """Checks, item by item, that the inputs and settings are those of the run being resumed.

    ``done`` is ``OutputWriter.done`` (index -> ``DoneRecord``; always indexes ``0..n-1``: the scan
    refuses any other file). Construction checks the fingerprint; then call ``check`` for every
    input item in input order, and ``finish`` once the inputs are exhausted. Each raises
    ``OutputError`` (exit 2) naming what changed. As the done records are a prefix of the inputs,
    checking items as they stream is enough to refuse before any request is sent for a new one.

    ``settings``/``previous_settings``: the current run's settings and those saved by the run being
    resumed (``OutputWriter.previous_settings``), to name the setting that changed.
    """

    def __init__(
        self,
        done: Mapping[int, DoneRecord],
        fingerprint: str,
        *,
        settings: Mapping[str, Any] | None = None,
        previous_settings: Mapping[str, Any] | None = None,
        out: Path | str | None = None,
    ) -> None:
        self.done = done
        self.fingerprint = fingerprint
        self.seen = 0
        self._where = f"cannot resume {out}" if out is not None else "cannot resume"
        changed = next((d for _, d in sorted(done.items()) if d.fingerprint != fingerprint), None)
        if changed is not None:
            dtype = dtype_change(previous_settings or {}, settings or {})
            raise OutputError(
                f"{self._where}: settings changed since the run being resumed: "
                + self._settings_change(changed, settings, previous_settings),
                hint=_RESUME_HINT + (f"; {PIN_DTYPE_HINT}" if dtype else ""),
            )
        if done and settings is not None and previous_settings is not None:
            batching = describe_settings_change(_batching(previous_settings), _batching(settings))
            if batching:
                raise OutputError(
                    f"{self._where}: batch settings changed since the run being resumed: {', '.join(batching)} "
                    "(they decide which requests share an engine step, so the rest would not be batched as "
                    "the run being resumed batched it)",
                    hint="resume with the same settings, or " + _RESUME_HINT,
                )

    def _settings_change(
        self, record: DoneRecord, settings: Mapping[str, Any] | None, previous: Mapping[str, Any] | None
    ) -> str:
        which = f"line {record.line} has fingerprint {record.fingerprint}, this run's is {self.fingerprint}"
        if settings is None or previous is None:
            return f"{which} (the earlier run's settings were not saved, so which setting changed is unknown)"
        changes = describe_settings_change(previous, settings)
        if not changes:
            return f"{which} (no saved setting differs: the model's files or vllm-extract's version changed)"
        return f"{', '.join(changes)} ({which})"

    def check(self, index: int, doc_id: str, text_sha256: str | None, line_sha256: str | None = None) -> bool:
        """True when the input item at ``index`` is already done (skip it), False when it is new.

        Items must come in input order. Raises ``OutputError`` when a done record's id or text
        differs from the item's, or, for a bad JSONL line (no text), its ``line_sha256``. A file
        read through a differently spelled path (``docs/a.txt`` vs ``/data/docs/a.txt``) is the
        same document when its text is the same.
        """
        self.seen = max(self.seen, index + 1)
        record = self.done.get(index)
        if record is None:
            return False
        same_text = record.text_sha256 == text_sha256 and record.line_sha256 == line_sha256
        same_id = record.id == doc_id or (not record.from_line and same_path(record.id, doc_id))
        if same_id and same_text:
            return True
        if not same_id:
            now, was = f"{doc_id!r}{_hash(text_sha256)}", f"{record.id!r}{_hash(record.text_sha256)}"
            what = f"document {index} is now {now}, was {was}"
        elif text_sha256 is None and record.text_sha256 is None:
            what = (
                f"document {index} ({doc_id!r}) is a different line now: sha256 {_short_hash(line_sha256)}, "
                f"was {_short_hash(record.line_sha256)}"
            )
        else:
            what = (
                f"document {index} ({doc_id!r}) has different text: sha256 {_short_hash(text_sha256)}, "
                f"was {_short_hash(record.text_sha256)}"
            )
        raise OutputError(
            f"{self._where}: the inputs changed since the run being resumed: {what} (output line {record.line})",
            hint=_RESUME_HINT,
        )

    def finish(self) -> None:
        """Call once every input item was checked: raises ``OutputError`` when the output holds more
        records than there are inputs (documents were removed)."""
        if len(self.done) > self.seen:
            raise OutputError(
                f"{self._where}: the output holds {len(self.done)} records but the inputs now have only "
                f"{self.seen} documents (documents were removed since the run being resumed)",
                hint=_RESUME_HINT,
            )


def check_resume(
    done: Mapping[int, DoneRecord],
    fingerprint: str,
    documents: Iterable[tuple[int, str, str | None] | tuple[int, str, str | None, str | None]],
    *,
    settings: Mapping[str, Any] | None = None,
    previous_settings: Mapping[str, Any] | None = None,
    out: Path | str | None = None,
) -> None:
    """Check a whole input up front: ``documents`` are ``(index, id, text_sha256)`` or ``(index,
    id, text_sha256, line_sha256)`` of the current inputs in order (``text_sha256`` None for a bad
    input, ``line_sha256`` a bad JSONL line's hash). Raises ``OutputError`` (refused: the CLI exits
    2) saying what changed; returns None when resuming is safe. See ``ResumeGuard`` to check while
    streaming."""
    guard = ResumeGuard(done, fingerprint, settings=settings, previous_settings=previous_settings, out=out)
    for identity in documents:
        guard.check(*identity)
    guard.finish()


def same_path(a: str, b: str) -> bool:
    """Whether two file ids name the same path spelled differently: equal once normalized, or one
    relative path equal to the trailing components of the other (``docs/a.txt`` and
    ``/data/docs/a.txt``). Lexical only; callers also require the same text."""
    na, nb = posixpath.normpath(a), posixpath.normpath(b)
    if na == nb:
        return True
    short, long = sorted((na, nb), key=len)
    return not posixpath.isabs(short) and not short.startswith("..") and long.endswith("/" + short)


def _short_hash(sha: str | None) -> str:
    return f"{sha[:12]}…" if sha else "none (no text was read)"


def _hash(sha: str | None) -> str:
    return f" (text sha256 {_short_hash(sha)})"


# -- reuse -----------------------------------------------------------------------------------------

PIN_DTYPE_HINT = (
    "machines with different CPUs choose different dtypes (bfloat16 where the CPU has native bf16, float32 "
    "elsewhere): pin one with --dtype (e.g. --dtype float32) on every machine of the fleet"
)


def dtype_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """``"dtype 'bfloat16' -> 'float32'"`` when two saved settings differ in the dtype, else None."""
    if "dtype" in old and "dtype" in new and old["dtype"] != new["dtype"]:
        return f"dtype {_short(old['dtype'])} -> {_short(new['dtype'])}"
    return None


def _warn_other_settings(path: Path, count: int, settings: Mapping[str, Any]) -> None:
    """Say why ``count`` records of a reuse file cannot be reused, from the settings saved beside it."""
    saved = read_run_settings(path)
    if saved is None:
        return
    previous = {k: v for k, v in saved[1].items() if not k.startswith(BATCHING_PREFIX)}
    current = {k: v for k, v in settings.items() if not k.startswith(BATCHING_PREFIX)}
    changes = describe_settings_change(previous, current)
    if not changes:
        return
    dtype = dtype_change(previous, current)
    logger.warning(
        "--reuse %s: %d record(s) were made with other settings (%s); those documents are extracted again%s",
        path,
        count,
        ", ".join(changes),
        f"; {PIN_DTYPE_HINT}" if dtype else "",
    )


@dataclass(frozen=True, slots=True)
class _Where:
    file: int
    offset: int
    length: int


class ReuseIndex:
    """``ok`` records of earlier outputs by (id, text_sha256, fingerprint); lines stay on disk.

    Build with ``ReuseIndex.load``. Memory holds one key and one file offset per record, so reusing
    outputs that carry their documents' text costs no more than reusing small ones.
    """

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self._at: dict[tuple[str, str, str], _Where] = {}
        self.records = 0
        self.damaged_lines = 0
        self.other_fingerprints = 0
        self.errors_skipped = 0

    def __len__(self) -> int:
        return len(self._at)

    @classmethod
    def load(
        cls,
        paths: Iterable[Path | str],
        *,
        fingerprint: str | None = None,
        out: Path | str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> ReuseIndex:
        """Index the records of ``paths`` (earlier outputs; the first file holding a key wins).

        With ``fingerprint``, only records of that fingerprint are indexed (the others can never
        match; they are counted in ``other_fingerprints``). With ``settings`` (this run's, as saved
        in ``OUT.run.json``), a file with records of another fingerprint is named in a warning
        with the settings that differ from its saved ones (a different dtype, chosen by another
        CPU, with the advice to pin ``--dtype``). Raises ``InputError`` (exit 2) for a
        path that cannot be read, or that is ``out`` itself (the run would overwrite it while
        reading it). A damaged line (bad JSON, not a valid record) is skipped, counted in
        ``damaged_lines`` and logged once per file; a torn last line is ignored.
        """
        index = cls()
        out_path = Path(out) if out is not None else None
        for given in paths:
            path = Path(given)
            if out_path is not None and same_file(path, out_path):
                raise InputError(
                    f"--reuse {path} is the output file itself",
                    hint="reuse the previous output under another name, or pass --resume to finish that run",
                )
            before = index.other_fingerprints
            try:
                index._add(path, len(index.paths), fingerprint)
            except OSError as exc:
                raise InputError(f"cannot read --reuse {path}: {exc.strerror}", hint="name an earlier output") from exc
            index.paths.append(path)
            if index.other_fingerprints > before and settings is not None:
                _warn_other_settings(path, index.other_fingerprints - before, settings)
        if index.paths:
            logger.info(
                "reuse: %d records from %d files (%d damaged lines, %d of other settings, %d errors not reused)",
                len(index),
                len(index.paths),
                index.damaged_lines,
                index.other_fingerprints,
                index.errors_skipped,
            )
        return index

    def _add(self, path: Path, file_number: int, fingerprint: str | None) -> None:
        damaged: list[int] = []
        with open(path, "rb") as stream:
            for line in read_lines(stream):
                if line.torn:
                    break  # an interrupted write, not a record
                try:
                    record = parse_record(line.data, number=line.number)
                except RecordError:
                    damaged.append(line.number)
                    continue
                self.records += 1
                if record.status != "ok" or record.text_sha256 is None:
                    self.errors_skipped += 1
                    continue
                if fingerprint is not None and record.fingerprint != fingerprint:
                    self.other_fingerprints += 1
                    continue
                key = (record.id, record.text_sha256, record.fingerprint)
                self._at.setdefault(key, _Where(file_number, line.offset, len(line.data)))
        if damaged:
            self.damaged_lines += len(damaged)
            shown = ", ".join(map(str, damaged[:5])) + (", ..." if len(damaged) > 5 else "")
            logger.warning(
                "--reuse %s: skipped %d damaged lines (%s); those documents are extracted again",
                path,
                len(damaged),
                shown,
            )

    def lookup(self, doc_id: str, text_sha256: str | None, fingerprint: str) -> dict[str, Any] | None:
        """A copy of the earlier record for this document, ready to write, or None.

        The copy has ``reused: true``; ``line`` and ``duplicate_id`` are removed (they describe the
        earlier run's input). The caller sets ``index`` and ``source`` and, when they apply to the
        current item, ``line``, ``duplicate_id`` and ``metadata`` (a JSONL line's other fields or
        a file's mtime may have changed while its text did not). A record that no longer reads
        back (the file changed since ``load``) is None, with a warning.
        """
        if text_sha256 is None:
            return None
        where = self._at.get((doc_id, text_sha256, fingerprint))
        if where is None:
            return None
        path = self.paths[where.file]
        try:
            with open(path, "rb") as stream:
                stream.seek(where.offset)
                record = parse_record(stream.read(where.length))
        except (OSError, RecordError) as exc:
            logger.warning("--reuse %s changed since it was read (%s); extracting %r again", path, exc, doc_id)
            return None
        if (record.id, record.text_sha256, record.fingerprint) != (doc_id, text_sha256, fingerprint):
            logger.warning("--reuse %s changed since it was read; extracting %r again", path, doc_id)
            return None
        data = record.to_dict()
        data.pop("line", None)
        data.pop("duplicate_id", None)
        data["reused"] = True
        return data
