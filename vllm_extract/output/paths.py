"""Checks on the files a command writes, made before anything is read, loaded or written.

A run writes ``--out`` (and beside it ``OUT.lock``, ``OUT.run.json``, ``OUT.engine.log``), and
optionally ``--errors``, ``--report`` and ``--metrics-file``; ``review`` writes its page. Each must
sit in an existing folder, and none may be a file the command reads: ``--overwrite`` replaces an
earlier output, never an input. A file inside a folder INPUT that the folder's globs would pick up
counts as read (the run would read its own output, and a later ``--resume`` would see a changed
input).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from fnmatch import fnmatch
from pathlib import Path

from ..exceptions import OutputError

__all__ = ["check_written_paths"]

_STORED_TEXT = "0" * 64 + ".txt"  # how --texts names a stored text: its SHA-256, hex


def check_written_paths(
    written: Mapping[str, Path | str | None],
    *,
    inputs: Iterable[str] = (),
    globs: Iterable[str] = (),
    read: Iterable[Path | str | None] = (),
    texts_dir: Path | str | None = None,
) -> None:
    """Refuse paths that cannot be written or would destroy what is read.

    ``written`` maps how each path was given (``--out``, ``--report``, ...) to the path (None:
    not given). ``inputs`` are INPUT arguments (``-``, files, folders; folders read recursively
    what matches ``globs``); ``read`` other files the command reads (gold, reuse files);
    ``texts_dir`` the folder ``--texts`` fills with ``<sha256>.txt`` files.

    Raises ``OutputError`` naming the option when a path's folder does not exist or cannot be
    written, when it is an input file or a file a folder input would read, or when two options
    name the same file.
    """
    given = {flag: Path(path) for flag, path in written.items() if path is not None}
    globs = tuple(globs)
    files = [Path(name) for name in inputs if name != "-" and not os.path.isdir(name)]
    files += [Path(p) for p in read if p is not None]
    folders = [Path(name) for name in inputs if name != "-" and os.path.isdir(name)]
    seen: dict[str, str] = {}
    for flag, path in given.items():
        folder = path.parent
        if not folder.is_dir():
            raise OutputError(f"{flag} {path}: the folder {folder} does not exist", hint="create it first")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {path}: the folder {folder} is not writable", hint="choose another path")
        real = os.path.realpath(path)
        if real in seen:
            raise OutputError(f"{flag} and {seen[real]} name the same file {path}", hint="give each its own path")
        seen[real] = flag
        for source in files:
            if _same_file(path, source):
                raise OutputError(
                    f"{flag} {path} is an input file; writing it would destroy the input",
                    hint="write to another path (--overwrite replaces an earlier output, never an input)",
                )
        for source in folders:
            inside = real.startswith(os.path.join(os.path.realpath(source), ""))
            if inside and any(fnmatch(path.name, g) for g in globs):
                raise OutputError(
                    f"{flag} {path} is inside the input folder {source} and matches its globs, so the run "
                    "would read its own output",
                    hint="write outside the input folder, or name it so the globs skip it",
                )
    if texts_dir is not None and any(fnmatch(_STORED_TEXT, g) for g in globs):
        real = os.path.join(os.path.realpath(texts_dir), "")
        for source in folders:
            if real.startswith(os.path.join(os.path.realpath(source), "")):
                raise OutputError(
                    f"--texts {texts_dir} is inside the input folder {source}, whose globs would read "
                    "the stored texts as documents",
                    hint="store the texts outside the input folder",
                )


def _same_file(a: Path, b: Path) -> bool:
    """Same file: the same resolved path, or (both existing) the same inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
