"""The files a run keeps beside its output, and writing a file so that no reader sees it half-written.

Beside ``--out`` (``OUT``) a run keeps, and these functions are the one place their names are spelled:

    OUT.lock         the lock (``OutputWriter``): the pid of the run writing OUT, empty when free
    OUT.run.json     the fingerprint and settings of the run that wrote OUT (``resume``)
    OUT.engine.log   the engine's own output (the CLI sends it there unless ``--verbose``)
    OUT.shard.json   the manifest a finished shard run writes (``shards``; ``merge`` reads it)

They are named from the real path of ``OUT`` (``os.path.realpath``): an ``OUT`` given through a
symlink (to the file, or to a folder above it) has them beside the file it names, so two runs
writing one file under two names take one lock, and ``--resume`` through either name finds the
same ``OUT.run.json``. An ``OUT`` that involves no symlink keeps the path as given (relative stays
relative, for messages). A hard link is another name for the same inode with no real path to
resolve to: ``OutputWriter`` refuses an ``OUT`` with more than one (``writer``).

``atomic_write`` is the one way a whole file is replaced (the report, the metrics, ``OUT.run.json``,
a shard manifest, a stored text, the review page); ``same_file`` says whether two paths name one file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = [
    "atomic_write",
    "engine_log_path",
    "lock_path",
    "manifest_path",
    "run_settings_path",
    "same_file",
]


def _beside(out: Path | str, suffix: str) -> Path:
    out = Path(out)
    real = Path(os.path.realpath(out))
    if real != Path(os.path.abspath(out)):  # a symlink on the way: beside the file it names
        out = real
    return out.with_name(out.name + suffix)


def lock_path(out: Path | str) -> Path:
    """``OUT.lock``: held by the run writing ``OUT``."""
    return _beside(out, ".lock")


def run_settings_path(out: Path | str) -> Path:
    """``OUT.run.json``: the fingerprint and settings of the run that wrote ``OUT``."""
    return _beside(out, ".run.json")


def engine_log_path(out: Path | str) -> Path:
    """``OUT.engine.log``: the engine's own output (warnings, loading bars) during the run."""
    return _beside(out, ".engine.log")


def manifest_path(out: Path | str) -> Path:
    """``OUT.shard.json``: the manifest of a finished shard run that wrote ``OUT``."""
    return _beside(out, ".shard.json")


def atomic_write(path: Path | str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the new one, never a
    part: a temporary file in the same folder is written, flushed and fsynced, renamed over
    ``path`` (``os.replace``), then the folder is fsynced so the rename survives a crash.

    The new file keeps the mode of the file it replaces, else 0644 (readable by others: e.g.
    node_exporter's textfile collector runs as another user). Raises ``OSError`` (the temporary
    file is removed); callers name the file in their own error.
    """
    path = Path(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            os.fchmod(stream.fileno(), mode)  # mkstemp makes the file 0600
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    # Some file systems cannot fsync a folder; the file itself is already durable then.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name one file: the same resolved path (existing or not), or, both
    existing, the same inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
