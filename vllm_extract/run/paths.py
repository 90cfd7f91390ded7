"""Checks on the files a command writes, made before anything is read, loaded or written.

A run writes ``--out`` and beside it ``OUT.lock``, ``OUT.run.json``, ``OUT.engine.log`` (and
``OUT.shard.json`` for a shard), optionally ``--errors``, ``--report``, ``--metrics-file`` and the
``--texts`` folder; ``review``, ``merge`` and ``gold from-conll`` write their ``--out``. Each must
sit in an existing folder, and none may be a file the command reads: ``--overwrite`` replaces an
earlier output, never an input. A file a folder INPUT would pick up (its name matches the globs,
in the folder or any folder or symlink the reader follows from it) counts as read: the run would
read its own output, and a later ``--resume`` would see a changed input.

These checks see both sides (the paths written and the inputs, walked as the reader walks them),
so they sit in the run layer: ``run``, ``merge``, ``review`` and ``gold from-conll`` call them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from fnmatch import fnmatch
from pathlib import Path

from ..exceptions import OutputError
from ..output.files import same_file
from ..readers.documents import walk_folder

__all__ = ["check_written_paths"]

_STORED_TEXT = "0" * 64 + ".txt"  # how --texts names a stored text: its SHA-256, hex

Given = Mapping[str, Path | str | None]


def check_written_paths(
    written: Given,
    *,
    inputs: Iterable[str] = (),
    globs: Iterable[str] = (),
    read: Given | None = None,
    texts_dir: Path | str | None = None,
) -> None:
    """Refuse paths that cannot be written or would destroy what is read.

    ``written`` maps how each path was given (``--out``, ``--report``, ...) to the path (None:
    not given). ``inputs`` are INPUT arguments (``-``, files, folders; folders are read
    recursively, following symlinks, for names matching ``globs``); ``read`` maps other options
    naming files the command reads (``--reuse``, ``--gold``) to their paths; ``texts_dir`` is the
    folder ``--texts`` fills with ``<sha256>.txt`` files (created when missing).

    Raises ``OutputError`` naming the option when a path's folder does not exist or cannot be
    written, when the path is an existing folder, when it is an input file, a file a folder input
    would read, or a file given to a ``read`` option, when two options name the same file, and
    when ``texts_dir`` is not a folder or sits where a folder input's globs would read the stored
    texts.
    """
    given = {flag: Path(path) for flag, path in written.items() if path is not None}
    globs = tuple(globs)
    files = {name: Path(name) for name in inputs if name != "-" and not os.path.isdir(name)}
    others = {flag: Path(path) for flag, path in (read or {}).items() if path is not None}
    folders = [_FolderReach(name, globs) for name in inputs if name != "-" and os.path.isdir(name)]
    seen: dict[str, str] = {}
    for flag, path in given.items():
        folder = path.parent
        if not folder.is_dir():
            raise OutputError(f"{flag} {path}: the folder {folder} does not exist", hint="create it first")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {path}: the folder {folder} is not writable", hint="choose another path")
        if path.is_dir():
            # Found up front: writing it used to fail only once the whole run was done (exit 70).
            raise OutputError(f"{flag} {path} is a folder, not a file", hint="name a file (in that folder, say)")
        real = os.path.realpath(path)
        if real in seen:
            raise OutputError(f"{flag} and {seen[real]} name the same file {path}", hint="give each its own path")
        seen[real] = flag
        if any(same_file(path, source) for source in files.values()):
            raise OutputError(
                f"{flag} {path} is an input file; writing it would destroy the input",
                hint="write to another path (--overwrite replaces an earlier output, never an input)",
            )
        for other, source in others.items():
            if same_file(path, source):
                raise OutputError(
                    f"{flag} {path} is also {other}, which this command reads", hint="write to another path"
                )
        for reach in folders:
            if reach.reads(path):
                raise OutputError(
                    f"{flag} {path} would be read by the input folder {reach.name} (its name matches the "
                    "globs), so the run would read its own output",
                    hint="write outside the input folder, or name it so the globs skip it",
                )
    if texts_dir is not None:
        _check_texts_dir(Path(texts_dir), folders)


def _check_texts_dir(texts_dir: Path, folders: list[_FolderReach]) -> None:
    if texts_dir.exists() and not texts_dir.is_dir():
        raise OutputError(f"--texts {texts_dir} exists and is not a folder", hint="name a folder")
    for reach in folders:
        if reach.reads(texts_dir / _STORED_TEXT):
            raise OutputError(
                f"--texts {texts_dir} is inside the input folder {reach.name}, whose globs would read "
                "the stored texts as documents",
                hint="store the texts outside the input folder",
            )


class _FolderReach:
    """What a folder INPUT reads, walked as the reader walks it (``readers.documents.walk_folder``):
    every folder reached (symlinked folders followed, each once) and the targets of symlinked
    files it picks up."""

    def __init__(self, name: str, globs: tuple[str, ...]) -> None:
        self.name = name
        self.globs = globs
        self.dirs: set[str] = set()
        self.linked_files: set[str] = set()
        for step in walk_folder(name):
            if step.kind == "folder":
                self.dirs.add(step.detail)
            elif step.entry is not None and step.entry.is_symlink() and self._matches(step.entry.name):
                self.linked_files.add(os.path.realpath(step.path))

    def _matches(self, name: str) -> bool:
        return any(fnmatch(name, g) for g in self.globs)

    def reads(self, path: Path) -> bool:
        """Whether the walk would read ``path`` (existing or not)."""
        if os.path.realpath(path) in self.linked_files:
            return True
        if not self._matches(path.name):
            return False
        # The walk is recursive: a file in a reached folder, or in any folder below one (one that
        # does not exist yet included), is read.
        folder = Path(os.path.realpath(path.parent))
        return any(str(f) in self.dirs for f in (folder, *folder.parents))
