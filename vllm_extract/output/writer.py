"""The output file: one JSONL record per input document, in input order, durable and resumable.

``OutputWriter`` holds a lock beside the file (``OUT.lock``) for the whole run, writes each
window's records with one write, then flushes and fsyncs. ``resume=True`` reads what an earlier run
left, cuts a torn last line, and reports which input positions are already done. Without resume an
existing non-empty output is never overwritten unless ``overwrite=True``.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson

from ..exceptions import LockHeldError, OutputError

__all__ = ["OutputWriter", "read_records"]

logger = logging.getLogger(__name__)


class OutputWriter:
    """Writes records to ``path``; use as a context manager."""

    def __init__(
        self,
        path: Path | str,
        *,
        resume: bool = False,
        overwrite: bool = False,
        errors_path: Path | str | None = None,
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.resume = resume
        self.overwrite = overwrite
        self.errors_path = Path(errors_path) if errors_path else None
        self.done: dict[int, str] = {}
        self.repaired_bytes = 0
        self.records_written = 0
        self._lock_fd: int | None = None
        self._out: IO[bytes] | None = None
        self._errors: IO[bytes] | None = None

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

    def _scan_existing(self) -> None:
        """Collect finished input positions; cut a torn or unparseable tail."""
        good_end = 0
        with open(self.path, "rb") as stream:
            offset = 0
            for line in stream:
                end = offset + len(line)
                if not line.endswith(b"\n"):
                    break
                try:
                    record = orjson.loads(line)
                    index = int(record["index"])
                    doc_id = str(record["id"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    break
                self.done.setdefault(index, doc_id)
                good_end = end
                offset = end
        size = self.path.stat().st_size
        if good_end < size:
            self.repaired_bytes = size - good_end
            logger.warning("cutting %d bytes of torn output at the end of %s", self.repaired_bytes, self.path)
            with open(self.path, "r+b") as stream:
                stream.truncate(good_end)
                stream.flush()
                os.fsync(stream.fileno())

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records (one line each), then flush and fsync: durable once this returns."""
        if self._out is None:
            raise OutputError("the output is not open", hint="use OutputWriter as a context manager")
        records = list(records)
        lines = [orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records]
        if not lines:
            return
        self._out.write(b"".join(lines))
        self._out.flush()
        os.fsync(self._out.fileno())
        self.records_written += len(lines)
        if self._errors is not None:
            errors = [line for line, r in zip(lines, records, strict=True) if r.get("status") == "error"]
            if errors:
                self._errors.write(b"".join(errors))
                self._errors.flush()
                os.fsync(self._errors.fileno())

    def close(self) -> None:
        for stream in (self._out, self._errors):
            if stream is not None:
                stream.close()
        self._out = self._errors = None
        self._release_lock()


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).strip()
        return int(raw) if raw else None
    except (OSError, ValueError):
        return None


def read_records(path: Path | str) -> list[dict[str, Any]]:
    """All complete records of an output file (a torn last line is ignored)."""
    out: list[dict[str, Any]] = []
    with open(path, "rb") as stream:
        for line in stream:
            if not line.endswith(b"\n"):
                break
            out.append(orjson.loads(line))
    return out
