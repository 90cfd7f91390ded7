"""The output file: one JSONL record per input document, in input order, durable and resumable.

``OutputWriter`` holds a lock beside the file (``OUT.lock``) for the whole run and appends
records as the run hands them over (each write reaches the OS at once); it fsyncs in small groups:
after ``FSYNC_EVERY`` records, or once ``FSYNC_SECONDS`` passed since an unsynced write, and on
close. A kill of the process loses nothing written; a power loss at most the unsynced group.
Every record is validated against the record contract (``records.Record``) and written in its canonical form.

One record never takes others with it: a str JSON cannot carry (lone surrogates, from a file name
that is not UTF-8 decoded with ``surrogateescape``) is written escaped, the way readers name such
files (each undecodable byte as ``\\xNN``, ``memo_\\xff.txt``; any other lone surrogate as
``\\udXXX``) with a warning in the record's ``warnings``; a record that still breaks the contract is
replaced by an ``internal`` error record for the same id and index, and the run goes on.

``resume=True`` reads what an earlier run left. Only an unterminated last line is torn (a write
cut by a kill; ``jsonl`` has the rule): it is cut. Any bad *complete* line (not JSON, not a valid
record, or not the record of the next input position) means the file is damaged or mixes runs:
``open`` raises ``OutputError`` naming the line and leaves the file untouched, byte for byte. What
was done is in ``done`` (index -> ``DoneRecord``), ``done_errors`` counts its error records, and
``previous_settings`` holds the settings saved by that run (``OUT.run.json``), if any; check them
against the current run with ``resume.ResumeGuard`` before generating anything.

Without resume an existing non-empty output is never overwritten unless ``overwrite=True``; an
empty one (0 bytes: what a run that failed before its first record leaves, e.g. the model did not
load) holds nothing to lose and is written over.

The lock is named from the output's real path (``files``), so a symlink to the output shares its
lock. A hard link cannot be resolved that way: an output with more than one name (``st_nlink`` >
1) is refused (``OutputError``). Two runs through two hard links would each hold their own lock
and write one file, and a run writing in place would change the file under its other names too
(a ``cp -al`` snapshot, say).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from ..exceptions import LockHeldError, OutputError
from .files import lock_path
from .jsonl import read_lines
from .records import ErrorKind, Record, RecordError, UnencodableRecordError, parse_record
from .resume import DoneRecord, read_run_settings, write_run_settings

__all__ = ["OutputWriter", "escape_unencodable", "read_records"]

logger = logging.getLogger(__name__)

FSYNC_EVERY = 8  # records written between fsyncs at most
FSYNC_SECONDS = 1.0  # and at most this long after a write


class OutputWriter:
    """Writes records to ``path``; use as a context manager.

    After ``open``: ``done`` (index -> ``DoneRecord``, resume only), ``done_errors`` (error records
    among them), ``previous_settings``. While writing: ``records_written``, ``errors_written``,
    ``replaced`` (records written as ``internal`` errors), ``escaped`` (records written escaped).
    ``errors_in_file`` = ``done_errors + errors_written``: the run exits 1 when it is not 0.
    Raises ``OutputError`` (exit 2) when the file cannot be opened, would be overwritten, or is
    damaged (resume), and ``LockHeldError`` (exit 4) when another live run holds it.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        resume: bool = False,
        overwrite: bool = False,
        errors_path: Path | str | None = None,
        fsync_every: int = FSYNC_EVERY,
        fsync_seconds: float = FSYNC_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.lock_path = lock_path(self.path)
        self.resume = resume
        self.overwrite = overwrite
        self.errors_path = Path(errors_path) if errors_path else None
        self.done: dict[int, DoneRecord] = {}
        self.done_errors = 0
        self.previous_settings: dict[str, Any] | None = None
        self.repaired_bytes = 0
        self.records_written = 0
        self.errors_written = 0
        self.replaced = 0
        self.escaped = 0
        self._fingerprint: str | None = None
        self._lock_fd: int | None = None
        self._out: IO[bytes] | None = None
        self._errors: IO[bytes] | None = None
        self.fsync_every = fsync_every
        self.fsync_seconds = fsync_seconds
        self._unsynced = 0
        self._synced_at = time.monotonic()

    def __enter__(self) -> OutputWriter:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if self.resume and self.overwrite:
            raise OutputError("--resume and --overwrite contradict each other", hint="choose one")
        parent = self.path.parent
        if not parent.is_dir():
            raise OutputError(f"output folder {parent} does not exist", hint="create it first")
        _refuse_hard_links(self.path)
        self._acquire_lock()
        try:
            exists = self.path.exists() and self.path.stat().st_size > 0
            if exists and not (self.resume or self.overwrite):
                raise OutputError(
                    f"{self.path} already exists and would be overwritten",
                    hint="pass --resume to continue that run, or --overwrite to replace it",
                )
            if self.resume and exists:
                self._scan_existing()
                saved = read_run_settings(self.path)
                self.previous_settings = saved[1] if saved else None
            mode = "ab" if self.resume else "wb"
            self._out = open(self.path, mode)  # noqa: SIM115 - closed in close()
            if self.errors_path is not None:
                self._errors = open(self.errors_path, "ab" if self.resume else "wb")  # noqa: SIM115
        except BaseException:
            self._release_lock()
            raise

    def _acquire_lock(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockHeldError(
                    f"another run (pid {holder or 'unknown'}) is writing {self.path}",
                    pid=holder,
                    hint="wait for it to finish, or write to another --out",
                ) from exc
            raise OutputError(f"cannot lock {self.lock_path}: {exc.strerror}") from exc
        stale = _read_pid(fd)
        if stale and stale != os.getpid():
            logger.warning("took over the lock of %s left by pid %d, which is no longer running", self.path, stale)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        # The lock file stays: deleting it before unlocking would let two runs each lock a
        # different inode. An empty file means "free"; the kernel drops the flock of a dead process.
        if self._lock_fd is None:
            return
        os.ftruncate(self._lock_fd, 0)
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
        self._lock_fd = None

    @property
    def errors_in_file(self) -> int:
        """Error records in the output once this run's writes are in: kept ones plus written ones."""
        return self.done_errors + self.errors_written

    def _scan_existing(self) -> None:
        """Collect the records already written; cut a torn last line; refuse a damaged file.

        Reads the file without changing it until the whole file has been checked: a damaged
        file is left byte for byte as it was.
        """
        good_end = 0
        done: dict[int, DoneRecord] = {}
        errors = 0
        with open(self.path, "rb") as stream:
            for line in read_lines(stream):
                if line.torn:
                    break  # a write cut by a kill: cut below
                number = line.number
                try:
                    record = parse_record(line.data, number=number)
                except RecordError as exc:
                    raise self._damaged(number, exc.message) from exc
                out_of_place = self._out_of_place(record, number, done)
                if out_of_place:
                    raise self._damaged(number, out_of_place)
                done[record.index] = DoneRecord.of(record, number)
                errors += record.status == "error"
                good_end = line.end
        self.done, self.done_errors = done, errors
        size = self.path.stat().st_size
        if good_end < size:
            self.repaired_bytes = size - good_end
            logger.warning("cutting %d bytes of torn output at the end of %s", self.repaired_bytes, self.path)
            with open(self.path, "r+b") as stream:
                stream.truncate(good_end)
                stream.flush()
                os.fsync(stream.fileno())

    def _out_of_place(self, record: Record, number: int, done: dict[int, DoneRecord]) -> str | None:
        """Why ``record``, read at line ``number`` after the records in ``done``, is out of place
        (None when it is where it belongs): line ``n`` holds index ``n - 1``."""
        if record.index != number - 1:
            return f"it holds index {record.index}, expected {number - 1} (one record per input, in order)"
        return None

    def _damaged(self, number: int, why: str) -> OutputError:
        return OutputError(
            f"{self.path} is damaged at line {number}: {why.removeprefix(f'line {number}: ')}; "
            "--resume only cuts an unterminated last line and leaves a damaged output as it is",
            hint=f"inspect line {number}; rerun with --overwrite, or write to a new --out and pass --reuse {self.path}",
        )

    def save_settings(self, fingerprint: str, settings: Mapping[str, Any]) -> None:
        """Save the run's fingerprint and settings beside the output (``OUT.run.json``) so a later
        ``--resume`` can name a changed setting. Call once the settings are known and checked,
        before the first ``write``. A resumed run keeps the file of the run it resumes."""
        if self.resume and self.done and self.previous_settings is not None:
            return
        write_run_settings(self.path, fingerprint, settings)

    def write(self, records: Iterable[Mapping[str, Any] | Record]) -> None:
        """Append records (one line each, canonical form) and flush them to the OS; fsync by the
        group rule (module docstring). Never raises for one bad record (see the module docstring); raises
        ``OutputError`` when the output is not open, and ``OSError`` when the disk fails."""
        if self._out is None:
            raise OutputError("the output is not open", hint="use OutputWriter as a context manager")
        base = len(self.done) + self.records_written
        models = [self._validated(r, base + i) for i, r in enumerate(records)]
        if not models:
            return
        lines = [m.to_json_bytes() + b"\n" for m in models]
        self._out.write(b"".join(lines))
        self._out.flush()
        self.records_written += len(lines)
        self._unsynced += len(lines)
        errors = [line for line, m in zip(lines, models, strict=True) if m.status == "error"]
        self.errors_written += len(errors)
        if self._errors is not None and errors:
            self._errors.write(b"".join(errors))
            self._errors.flush()
        if self._unsynced >= self.fsync_every:
            self.sync()
        else:
            self.sync_if_due()

    def sync_if_due(self) -> None:
        """Fsync when records were written more than ``fsync_seconds`` ago and are not yet durable
        (a run calls it as responses arrive, so a quiet stretch does not leave a group unsynced)."""
        if self._unsynced and time.monotonic() - self._synced_at >= self.fsync_seconds:
            self.sync()

    def sync(self) -> None:
        """Make every record written so far durable (fsync of the output and the errors file)."""
        for stream in (self._out, self._errors):
            if stream is not None:
                stream.flush()
                os.fsync(stream.fileno())
        self._unsynced = 0
        self._synced_at = time.monotonic()

    def _validated(self, record: Mapping[str, Any] | Record, position: int) -> Record:
        """The record as a valid, encodable ``Record``: as given, escaped, or an ``internal`` error.
        ``position`` is the 0-based line it will be written on."""
        data = record.to_dict() if isinstance(record, Record) else record
        try:
            model = Record.from_dict(data)
        except UnencodableRecordError:
            escaped, fields = escape_unencodable(data)
            try:
                model = Record.from_dict(_with_warning(escaped, fields))
            except RecordError as exc:
                return self._replacement(data, exc.message, position)
            self.escaped += 1
            logger.warning("record %r: wrote %s escaped (not valid UTF-8)", model.id, ", ".join(fields))
        except RecordError as exc:
            return self._replacement(data, exc.message, position)
        self._fingerprint = model.fingerprint
        if model.index != position:
            # Written anyway (nothing is lost), but --resume will refuse this file: a pipeline bug.
            logger.error("record %r has index %d but is written on line %d", model.id, model.index, position + 1)
        return model

    def _replacement(self, data: Mapping[str, Any], why: str, position: int) -> Record:
        """An ``internal`` error record standing in for a record that breaks the contract."""
        self.replaced += 1
        index = data.get("index")
        fingerprint = data.get("fingerprint")
        sha = data.get("text_sha256")
        line = data.get("line")
        doc_id = _escape(str(data.get("id", f"#{position}")))
        logger.error("record %r breaks the record contract and is written as an internal error: %s", doc_id, why)
        replacement: dict[str, Any] = {
            "id": doc_id,
            "index": index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else position,
            "source": _escape(str(data.get("source", ""))),
            "line": line if isinstance(line, int) and not isinstance(line, bool) and line > 0 else None,
            "text_sha256": sha if isinstance(sha, str) else None,
            "fingerprint": fingerprint if isinstance(fingerprint, str) else self._fingerprint or "0" * 16,
            "status": "error",
            "error": {
                "kind": ErrorKind.INTERNAL.value,
                "message": f"this record could not be written as the record contract requires ({why[:500]}); "
                "this is a bug in vllm-extract: please report it",
            },
        }
        try:
            return Record.from_dict(replacement)
        except RecordError:  # a mangled sha256/fingerprint: drop what is not valid
            replacement["text_sha256"] = None
            replacement["fingerprint"] = self._fingerprint or "0" * 16
            return Record.from_dict(replacement)

    def close(self) -> None:
        if self._out is not None:
            self.sync()
        for stream in (self._out, self._errors):
            if stream is not None:
                stream.close()
        self._out = self._errors = None
        self._release_lock()


def _refuse_hard_links(path: Path) -> None:
    """Refuse an output that is one of several names of a file (see the module docstring)."""
    try:
        info = os.stat(path)
    except OSError:
        return  # not there yet (or unreadable: open says so)
    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
        raise OutputError(
            f"{path} is one of {info.st_nlink} names of one file (hard links): another run writing it under "
            "another name would not see this run's lock, and writing it changes every name",
            hint=f"break the link first (cp {path} TMP && mv TMP {path}), or write to another --out",
        )


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).strip()
        return int(raw) if raw else None
    except (OSError, ValueError):
        return None


def read_records(path: Path | str) -> list[dict[str, Any]]:
    """All complete records of an output (or errors) file, each validated against the record
    contract, as parsed JSON objects (a torn last line is ignored: ``jsonl``).

    Raises ``RecordError`` (an ``OutputError``) naming the line when one is not a valid record.
    """
    out: list[dict[str, Any]] = []
    with open(path, "rb") as stream:
        for line in read_lines(stream):
            if line.torn:
                break
            try:
                record = parse_record(line.data, number=line.number)
            except RecordError as exc:
                raise RecordError(f"{path} {exc.message}", line=line.number) from exc
            out.append(record.to_dict())
    return out


def escape_unencodable(value: Any) -> tuple[Any, list[str]]:
    """``value`` (a record, or any JSON-like value) with every str that UTF-8 cannot carry escaped
    (see ``_escape``), and the top-level fields that changed. Keys are escaped too."""
    changed: list[str] = []
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            new_key = _escape(key) if isinstance(key, str) else key
            new_item = _escape_deep(item)
            if new_key != key or new_item != item:
                changed.append(str(new_key))
            out[new_key] = new_item
        return out, changed
    return _escape_deep(value), changed


def _escape_deep(value: Any) -> Any:
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, Mapping):
        return {(_escape(k) if isinstance(k, str) else k): _escape_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escape_deep(v) for v in value]
    return value


def _escape(text: str) -> str:
    """``text`` if UTF-8 can carry it; else undecodable bytes (``surrogateescape``) as ``\\xNN``,
    as ``readers.display_name`` names files, and other lone surrogates as ``\\udXXX``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _with_warning(data: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    note = f"{', '.join(fields)}: not valid UTF-8; undecodable bytes written as \\xNN escapes"
    warnings = data.get("warnings")
    return data | {"warnings": [*(warnings if isinstance(warnings, list) else []), note]}
