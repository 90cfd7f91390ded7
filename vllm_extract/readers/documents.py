"""Reading inputs: JSONL files, document folders, single files (text, PDF, DOCX, HTML) and stdin.

Inputs stream: documents are yielded one at a time in input order and the corpus is never held
in memory. Every input that cannot become a document becomes a ``BadInput`` at its place in the
stream (malformed line, binary file, encrypted PDF, ...), so the run records it instead of losing
it; the kinds are listed in ``_items``. A reader that fails in a way nobody foresaw (a library
error on a strange file) also gives a ``corrupt`` bad input: one file never ends the run.

Which reader reads a file goes by its suffix (any case): ``.jsonl``/``.ndjson`` (one document per
line), ``.pdf`` (``pdf``), ``.docx`` (``docx``), ``.html``/``.htm`` (``html``), anything else
UTF-8 text (``text``). Inside a folder only files matching ``globs`` are read; the others are
listed as ``SkippedFile``. A folder entry that is not a regular file (FIFO, socket, device) is a
``not_a_file`` bad input and is never opened; a pipe named directly as an INPUT (``<(zcat x)``)
is read, as text or JSONL only.

Ids and sources of files are their paths as given (``folder/sub/name.pdf``), made UTF-8-safe by
``display_name`` (undecodable bytes become ``\\xNN``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import stat as stat_module
import sys
from collections.abc import Callable, Iterable, Iterator
from fnmatch import fnmatch
from typing import IO, Any, NamedTuple

import orjson

from ..exceptions import InputError
from ._files import display_name, file_status
from ._items import BadInput, Document, InputItem, Origin, SkippedFile
from .docx import read_docx
from .html import read_html
from .pdf import read_pdf
from .text import is_blank, read_text_file

__all__ = [
    "CONVERTED_SUFFIXES",
    "DEFAULT_GLOBS",
    "JSONL_SUFFIXES",
    "BadInput",
    "Document",
    "InputItem",
    "SkippedFile",
    "count_documents",
    "iter_documents",
]

logger = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".ndjson")
DEFAULT_GLOBS = ("*.txt", "*.md", "*.pdf", "*.docx", "*.html", "*.htm")
_READ_BLOCK = 1 << 20
_BOM = b"\xef\xbb\xbf"

Reader = Callable[[Origin, os.stat_result], Document | BadInput]
CONVERTED_SUFFIXES: dict[str, Reader] = {".pdf": read_pdf, ".docx": read_docx, ".html": read_html, ".htm": read_html}


def iter_documents(
    inputs: Iterable[str],
    *,
    id_field: str = "id",
    text_field: str = "text",
    globs: Iterable[str] = DEFAULT_GLOBS,
    max_line_bytes: int = 64 * 1024 * 1024,
    stdin: IO[bytes] | None = None,
) -> Iterator[InputItem]:
    """Yield documents, bad inputs and skipped files from INPUT arguments, in order.

    An INPUT is ``-`` (JSONL on standard input), a ``.jsonl``/``.ndjson`` file, a folder (recursive,
    files matching ``globs``, sorted by name), or any other file (one document). A missing INPUT
    raises InputError before anything is yielded.
    """
    inputs = list(inputs)
    for name in inputs:
        if name != "-" and not os.path.lexists(name):
            raise InputError(
                f"input {display_name(name)!r} does not exist",
                hint="pass files (JSONL, text, PDF, DOCX, HTML), folders, or - for stdin",
            )
    counter = _Counter()
    globs = tuple(globs)
    for name in inputs:
        if name == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            yield from _jsonl_stream(stream, "<stdin>", counter, id_field, text_field, max_line_bytes)
        elif os.path.isdir(name):
            yield from _folder(name, counter, globs, id_field, text_field, max_line_bytes)
        else:
            yield from _file(name, counter, id_field, text_field, max_line_bytes, direct=True)


class _Counter:
    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value += 1
        return self.value - 1


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _file(
    path: str, counter: _Counter, id_field: str, text_field: str, max_line_bytes: int, *, direct: bool
) -> Iterator[InputItem]:
    name = display_name(path)
    suffix = _suffix(path)
    st, problem = file_status(path)
    pipe = st is not None and (stat_module.S_ISFIFO(st.st_mode) or stat_module.S_ISCHR(st.st_mode))
    readable_pipe = direct and pipe and suffix not in CONVERTED_SUFFIXES
    if problem is not None and not readable_pipe:
        kind = "not_a_file" if st is not None else "unreadable"
        yield BadInput(name, name, counter.next(), kind, f"{name} {problem}")
        return
    if suffix in JSONL_SUFFIXES:
        try:
            with open(path, "rb") as stream:
                yield from _jsonl_stream(stream, name, counter, id_field, text_field, max_line_bytes)
        except OSError as exc:
            yield BadInput(name, name, counter.next(), "unreadable", f"cannot read {name}: {exc.strerror}")
        return
    origin = Origin(path, name, counter.next())
    reader = CONVERTED_SUFFIXES.get(suffix)
    if reader is None:
        yield read_text_file(origin)
        return
    assert st is not None
    if st.st_size == 0 and stat_module.S_ISREG(st.st_mode):
        yield origin.bad("empty", f"{name} is empty (0 bytes)")  # as for any file: not a broken PDF
        return
    try:
        yield reader(origin, st)
    except OSError as exc:
        yield origin.bad("unreadable", f"cannot read {name}: {exc.strerror}")
    except Exception as exc:  # noqa: BLE001 - a library failing on one file must not end the run
        yield origin.bad("corrupt", f"{name} could not be read as {suffix[1:].upper()}: {type(exc).__name__}: {exc}")


class FolderStep(NamedTuple):
    """One step of ``walk_folder``. ``kind``: ``folder`` (entered; ``detail`` its real path),
    ``entry`` (anything but a folder; ``entry`` its DirEntry), ``loop`` (a link back to a folder
    that holds it, or to itself: skipped; ``detail`` its real path), ``alias`` (a folder already
    walked under another name, a sibling link such as ``current -> 2024``: skipped, as its files
    are read once already; ``detail`` its real path) or ``unreadable`` (cannot be listed;
    ``detail`` why)."""

    kind: str
    path: str
    detail: str = ""
    entry: os.DirEntry[str] | None = None


def walk_folder(root: str) -> Iterator[FolderStep]:
    """Walk a folder INPUT as ``iter_documents`` reads it: depth first, entries in byte order of
    their names, symlinked folders followed, each real folder once: the first name reached reads
    it, a later one is an ``alias`` (a link to a folder that holds it is a ``loop``).
    ``run.paths`` walks the same way to know which files a run would read."""
    seen: set[str] = set()
    above: list[str] = []  # real paths of the folders being walked, the root first

    def walk(directory: str) -> Iterator[FolderStep]:
        real = os.path.realpath(directory)
        if real in above:
            yield FolderStep("loop", directory, real)
            return
        if real in seen:
            yield FolderStep("alias", directory, real)
            return
        seen.add(real)
        yield FolderStep("folder", directory, real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            yield FolderStep("unreadable", directory, str(exc.strerror))
            return
        above.append(real)
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                yield from walk(entry.path)
            else:
                yield FolderStep("entry", entry.path, entry=entry)
        above.pop()

    yield from walk(root)


def _folder(
    root: str,
    counter: _Counter,
    globs: tuple[str, ...],
    id_field: str,
    text_field: str,
    max_line_bytes: int,
) -> Iterator[InputItem]:
    for step in walk_folder(root):
        shown = display_name(step.path)
        if step.kind == "loop":
            message = f"{shown} links back to {display_name(step.detail)}, which holds it (symlink loop); skipped"
            yield BadInput(shown, shown, counter.next(), "symlink_loop", message)
        elif step.kind == "alias":
            logger.info("%s is %s, already read under another name; skipped", shown, display_name(step.detail))
        elif step.kind == "unreadable":
            yield BadInput(shown, shown, counter.next(), "unreadable", f"cannot list {shown}: {step.detail}")
        elif step.kind == "entry":
            if _reads(step.path, globs):
                yield from _file(step.path, counter, id_field, text_field, max_line_bytes, direct=False)
            else:
                yield SkippedFile(shown)


def _reads(path: str, globs: tuple[str, ...]) -> bool:
    """Whether a folder input reads the file at ``path``: its name matches the globs, or it is a
    link to nothing (read, so that it is reported)."""
    return any(fnmatch(os.path.basename(path), g) for g in globs) or not os.path.exists(path)


def _jsonl_stream(
    stream: IO[bytes],
    source: str,
    counter: _Counter,
    id_field: str,
    text_field: str,
    max_line_bytes: int,
) -> Iterator[InputItem]:
    """One document per non-blank line; a file with no such line is one ``empty`` bad input.

    A UTF-8 byte-order mark opening the first line is removed (a line holding only the mark is a
    blank line); blank lines are skipped but counted in line numbers.
    """
    line_no = 0
    items = 0
    while True:
        # A line over the limit is read as limit + 1 bytes (no newline); the first line may carry a
        # BOM on top, which does not count.
        raw = stream.readline(max_line_bytes + 1 + (len(_BOM) if line_no == 0 else 0))
        if not raw:
            if items == 0:
                what = "is empty" if line_no == 0 else "has only blank lines"
                yield BadInput(source, source, counter.next(), "empty", f"{source} {what}")
            return
        line_no += 1
        if line_no == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        where = f"{source}:{line_no}"
        ended = raw.endswith(b"\n")
        if len(raw) - ended > max_line_bytes:
            digest = hashlib.sha256(raw)
            skipped = len(raw) + (0 if ended else _skip_rest_of_line(stream, digest))
            yield BadInput(
                where,
                source,
                counter.next(),
                "line_too_long",
                f"line {line_no} is {skipped} bytes, over the {max_line_bytes}-byte limit (max_line_bytes)",
                line=line_no,
                line_sha256=digest.hexdigest(),
            )
            items += 1
            continue
        if not raw.strip():
            continue
        items += 1
        item = _parse_line(raw, source, line_no, counter.next(), id_field, text_field)
        if isinstance(item, BadInput):
            item = dataclasses.replace(item, line_sha256=line_sha256(raw))
        yield item


def line_sha256(raw: bytes) -> str:
    """A JSONL line's identity for ``--resume`` (``BadInput.line_sha256``): the hex SHA-256 of its
    bytes as read, without the final newline."""
    return hashlib.sha256(raw.removesuffix(b"\n")).hexdigest()


def _skip_rest_of_line(stream: IO[bytes], digest: Any) -> int:
    """Read past the rest of an over-long line, feeding ``digest`` (a hashlib object) its bytes
    without the final newline; the number of bytes read."""
    skipped = 0
    while True:
        block = stream.readline(_READ_BLOCK)
        skipped += len(block)
        digest.update(block.removesuffix(b"\n"))
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
    if isinstance(raw_id, float):
        raw_id = _number_as_written(raw, id_field, raw_id)
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
    if is_blank(text):
        return BadInput(doc_id, source, index, "empty_text", f"line {line_no}: {text_field!r} is empty", line_no)
    metadata = {k: v for k, v in obj.items() if k not in (id_field, text_field)}
    return Document(doc_id, text, source, index, metadata, line=line_no)


def _number_as_written(raw: bytes, field: str, value: float) -> str | float:
    """A numeric field's JSON token exactly as the line writes it (``18446744073709551616``,
    ``2.50``). orjson reads an integer beyond 64 bits as a float, losing digits, so a number
    that came back as a float is read again from the line with the standard library, which keeps
    every token as written. ``value`` when that fails (it cannot: orjson parsed the line)."""
    try:
        obj = json.loads(raw, parse_int=str, parse_float=str)
    except ValueError:
        return value
    token = obj.get(field) if isinstance(obj, dict) else None
    return token if isinstance(token, str) else value


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def count_documents(inputs: Iterable[str], *, globs: Iterable[str] = DEFAULT_GLOBS) -> int | None:
    """A quick count of input items for progress totals, without reading any document.

    JSONL files count their lines (at least 1: an empty file is one bad input); every other file
    counts 1 (a PDF is one document whatever its pages). Nothing but JSONL files is opened, and no
    FIFO, socket or device ever is. None when an input is stdin or a pipe (it cannot be counted
    without consuming it). A folder is walked as the reader walks it (``walk_folder``: symlinked
    folders followed, each once); a symlink loop or a folder not listable counts 1, as the reader
    yields one bad input for it; a folder already read under another name counts 0.
    """
    total = 0
    globs = tuple(globs)
    for name in inputs:
        if name == "-":
            return None
        if os.path.isdir(name):
            for step in walk_folder(name):
                if step.kind in ("loop", "unreadable"):
                    total += 1
                elif step.kind == "entry" and _reads(step.path, globs):
                    total += _count_lines(step.path) if _suffix(step.path) in JSONL_SUFFIXES else 1
            continue
        st, problem = file_status(name)
        if st is not None and problem is not None:
            return None  # a pipe or device named directly
        total += _count_lines(name) if _suffix(name) in JSONL_SUFFIXES else 1
    return total


def _count_lines(path: str) -> int:
    st, problem = file_status(path)
    if st is None or problem is not None:
        return 1
    count = 0
    last = b""
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(_READ_BLOCK), b""):
                count += block.count(b"\n")
                last = block[-1:]
    except OSError:
        return 1
    return max(1, count + (last not in (b"", b"\n")))
