"""File-level safety shared by every reader: display names, regular-file checks, file metadata.

- ``display_name(path)``: the str used as a document's ``id`` and ``source``. POSIX file names are
  bytes; a name that is not valid UTF-8 (``memo_\\xff.txt``) arrives from ``os.scandir`` with
  surrogate escapes that no UTF-8 writer accepts. Such bytes are written as ``\\xNN`` escapes
  (``os.fsencode(path).decode("utf-8", "backslashreplace")``): the id is a plain UTF-8 str, stable
  from run to run, and readable. (A file literally named with a backslash sequence would share the
  id; we accept that.) The real path is kept separately for opening the file.
- ``file_status(path)``: ``stat`` (never ``open``) a file before reading it. A FIFO, socket or
  device named ``*.txt`` inside a folder would block or never end; it becomes a ``not_a_file`` bad
  input instead.
- ``file_metadata(stat)``: ``file_size`` (bytes) and ``modified`` (ISO 8601, UTC, whole seconds).
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
from datetime import UTC, datetime
from typing import Any

__all__ = ["DOCS_EXTRA_HINT", "display_name", "file_metadata", "file_status"]

DOCS_EXTRA_HINT = "pip install 'vllm-extract[docs]'"


def display_name(path: str | os.PathLike[str]) -> str:
    """``path`` as a str that always encodes to UTF-8 (undecodable bytes become ``\\xNN``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def file_status(path: str) -> tuple[os.stat_result | None, str | None]:
    """``(stat, None)`` for a regular file (symlinks followed); else ``(stat or None, why not)``.

    Never opens the file: a FIFO must not be opened (opening one blocks until a writer comes).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        if os.path.lexists(path):
            return None, "is a broken link" if exc.errno == errno.ENOENT else f"cannot be read: {exc.strerror}"
        return None, f"cannot be read: {exc.strerror}"
    if stat_module.S_ISREG(st.st_mode):
        return st, None
    for test, what in (
        (stat_module.S_ISFIFO, "a FIFO (named pipe)"),
        (stat_module.S_ISSOCK, "a socket"),
        (stat_module.S_ISCHR, "a character device"),
        (stat_module.S_ISBLK, "a block device"),
        (stat_module.S_ISDIR, "a directory"),
    ):
        if test(st.st_mode):
            return st, f"is {what}, not a regular file; not read"
    return st, "is not a regular file; not read"


def file_metadata(st: os.stat_result) -> dict[str, Any]:
    """``{"file_size": bytes, "modified": "YYYY-MM-DDTHH:MM:SSZ"}`` from a stat result."""
    modified = datetime.fromtimestamp(st.st_mtime, UTC).replace(microsecond=0)
    return {"file_size": st.st_size, "modified": modified.isoformat().replace("+00:00", "Z")}
