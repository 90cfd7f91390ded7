"""Reading inputs: JSONL files, document folders, single text files and standard input.

Inputs stream: documents are yielded one at a time in input order and the corpus is never held
in memory. Every input that cannot become a document becomes a ``BadInput`` at its place in the
stream (malformed line, binary file, ...), so the run records it instead of losing it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import IO, Any

import orjson

from ..exceptions import InputError

__all__ = [
    "BadInput",
    "Document",
    "InputItem",
    "SkippedFile",
    "count_documents",
    "iter_documents",
]

JSONL_SUFFIXES = (".jsonl", ".ndjson")
_READ_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class Document:
    """One document: its text and where it came from. ``index`` is its position in the input."""

    id: str
    text: str
    source: str
    index: int
    metadata: dict[str, Any] = field(default_factory=dict)
    line: int | None = None


@dataclass(frozen=True, slots=True)
class BadInput:
    """An input that could not become a document; it becomes an error record in the output."""

    id: str
    source: str
    index: int
    kind: str
    message: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file inside an input folder that does not match the globs (listed, not processed)."""

    path: str


InputItem = Document | BadInput | SkippedFile


def iter_documents(
    inputs: Iterable[str],
    *,
    id_field: str = "id",
    text_field: str = "text",
    globs: Iterable[str] = ("*.txt", "*.md"),
    max_line_bytes: int = 64 * 1024 * 1024,
    stdin: IO[bytes] | None = None,
) -> Iterator[InputItem]:
    """Yield documents, bad inputs and skipped files from INPUT arguments, in order.

    An INPUT is ``-`` (JSONL on standard input), a ``.jsonl``/``.ndjson`` file, a folder (recursive,
    files matching ``globs``), or any other file (one document). A missing INPUT raises InputError
    before anything is yielded.
    """
    inputs = list(inputs)
    for name in inputs:
        if name != "-" and not os.path.lexists(name):
            raise InputError(f"input {name!r} does not exist", hint="pass JSONL files, folders, or - for stdin")
    counter = _Counter()
    globs = tuple(globs)
    for name in inputs:
        if name == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            yield from _jsonl_stream(stream, "<stdin>", counter, id_field, text_field, max_line_bytes)
        elif os.path.isdir(name):
            yield from _folder(Path(name), counter, globs, id_field, text_field, max_line_bytes)
        else:
            yield from _file(Path(name), counter, id_field, text_field, max_line_bytes)


class _Counter:
    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value += 1
        return self.value - 1


def _file(path: Path, counter: _Counter, id_field: str, text_field: str, max_line_bytes: int) -> Iterator[InputItem]:
    source = str(path)
    if path.suffix.lower() in JSONL_SUFFIXES:
        try:
            with open(path, "rb") as stream:
                yield from _jsonl_stream(stream, source, counter, id_field, text_field, max_line_bytes)
        except OSError as exc:
            yield BadInput(source, source, counter.next(), "unreadable", f"cannot read {source}: {exc.strerror}")
        return
    yield _text_file(path, source, counter.next())


def _text_file(path: Path, doc_id: str, index: int) -> Document | BadInput:
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return BadInput(doc_id, source, index, "unreadable", f"cannot read {source}: {exc.strerror}")
    if not data.strip():
        return BadInput(doc_id, source, index, "empty", f"{source} is empty")
    if b"\x00" in data[:8192]:
        return BadInput(doc_id, source, index, "binary", f"{source} looks binary (NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return BadInput(doc_id, source, index, "not_utf8", f"{source} is not UTF-8 (byte {exc.start}: {exc.reason})")
    return Document(doc_id, text, source, index)


def _folder(
    root: Path,
    counter: _Counter,
    globs: tuple[str, ...],
    id_field: str,
    text_field: str,
    max_line_bytes: int,
) -> Iterator[InputItem]:
    seen_dirs: set[str] = set()

    def walk(directory: Path) -> Iterator[InputItem]:
        real = os.path.realpath(directory)
        if real in seen_dirs:
            yield BadInput(
                str(directory),
                str(directory),
                counter.next(),
                "symlink_loop",
                f"{directory} links back to {real}, already read (symlink loop); skipped",
            )
            return
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            yield BadInput(str(directory), str(directory), counter.next(), "unreadable", str(exc))
            return
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                yield from walk(path)
            elif not os.path.exists(path):
                yield BadInput(str(path), str(path), counter.next(), "unreadable", f"{path} is a broken link")
            elif path.suffix.lower() in JSONL_SUFFIXES and any(fnmatch(entry.name, g) for g in globs):
                yield from _file(path, counter, id_field, text_field, max_line_bytes)
            elif any(fnmatch(entry.name, g) for g in globs):
                yield _text_file(path, str(path), counter.next())
            else:
                yield SkippedFile(str(path))

    yield from walk(root)


def _jsonl_stream(
    stream: IO[bytes],
    source: str,
    counter: _Counter,
    id_field: str,
    text_field: str,
    max_line_bytes: int,
) -> Iterator[InputItem]:
    line_no = 0
    while True:
        raw = stream.readline(max_line_bytes + 1)
        if not raw:
            if line_no == 0:
                yield BadInput(source, source, counter.next(), "empty", f"{source} is empty")
            return
        line_no += 1
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf") and raw[3:].strip():
            raw = raw[3:]  # a UTF-8 byte-order mark
        where = f"{source}:{line_no}"
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            skipped = len(raw) + _skip_rest_of_line(stream)
            yield BadInput(
                where,
                source,
                counter.next(),
                "line_too_long",
                f"line {line_no} is {skipped} bytes, over the {max_line_bytes}-byte limit (max_line_bytes)",
                line=line_no,
            )
            continue
        if not raw.strip():
            continue
        yield _parse_line(raw, source, line_no, counter.next(), id_field, text_field)


def _skip_rest_of_line(stream: IO[bytes]) -> int:
    skipped = 0
    while True:
        block = stream.readline(_READ_BLOCK)
        skipped += len(block)
        if not block or block.endswith(b"\n"):
            return skipped


def _parse_line(
    raw: bytes, source: str, line_no: int, index: int, id_field: str, text_field: str
) -> Document | BadInput:
    where = f"{source}:{line_no}"
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        kind = "not_utf8" if _not_utf8(raw) else "malformed_json"
        return BadInput(where, source, index, kind, f"line {line_no} is not valid JSON: {exc}", line=line_no)
    if not isinstance(obj, dict):
        return BadInput(
            where,
            source,
            index,
            "not_object",
            f"line {line_no} is a JSON {type(obj).__name__}, not an object",
            line=line_no,
        )
    raw_id = obj.get(id_field)
    doc_id = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) and str(raw_id) else where
    if text_field not in obj:
        return BadInput(doc_id, source, index, "missing_text", f"line {line_no} has no {text_field!r} field", line_no)
    text = obj[text_field]
    if not isinstance(text, str):
        return BadInput(
            doc_id,
            source,
            index,
            "text_not_string",
            f"line {line_no}: {text_field!r} is a {type(text).__name__}, not a string",
            line_no,
        )
    if not text.strip():
        return BadInput(doc_id, source, index, "empty_text", f"line {line_no}: {text_field!r} is empty", line_no)
    metadata = {k: v for k, v in obj.items() if k not in (id_field, text_field)}
    return Document(doc_id, text, source, index, metadata, line=line_no)


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def count_documents(inputs: Iterable[str], *, globs: Iterable[str] = ("*.txt", "*.md")) -> int | None:
    """A quick upper-bound count of input items for progress totals (None for stdin)."""
    total = 0
    globs = tuple(globs)
    for name in inputs:
        if name == "-":
            return None
        path = Path(name)
        if path.is_dir():
            for root, _dirs, files in os.walk(path, followlinks=False):
                for file in files:
                    if any(fnmatch(file, g) for g in globs):
                        total += _count_lines(Path(root, file)) if file.endswith(JSONL_SUFFIXES) else 1
        elif path.suffix.lower() in JSONL_SUFFIXES:
            total += _count_lines(path)
        else:
            total += 1
    return total


def _count_lines(path: Path) -> int:
    count = 0
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(_READ_BLOCK), b""):
                count += block.count(b"\n")
            if stream.tell() and not _ends_with_newline(path):
                count += 1
    except OSError:
        return 1
    return count


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as stream:
        stream.seek(-1, os.SEEK_END)
        return stream.read(1) == b"\n"
