"""Reading JSONL back: the one line reader, with one rule for a torn last line.

Every JSONL file vllm-extract reads back goes through ``read_lines``: outputs and ``--errors``
files (the resume scan, ``read_records``), ``--reuse`` sources, shard outputs (``merge``), the
records ``review`` shows, and ``eval``'s predictions and gold files. (Documents given as INPUT are
read by ``readers``, which has its own limits on line length.)

The rule:

- a line ends with ``\\n``; each is yielded as a ``JsonlLine``: its 1-based ``number``, the byte
  ``offset`` where its data starts, its bytes (newline included) and whether it is ``torn``;
- a UTF-8 byte-order mark opening the file is not part of line 1 (its offset is then 3);
- the last line may lack its newline: it is **torn** (a write cut by a kill, or a run still
  writing). It is yielded with ``torn=True`` and is never parsed here: ``iter_objects`` skips it,
  and each caller says what it means there (the resume scan cuts it, ``merge`` names it,
  ``read_records``, ``--reuse`` and ``review`` ignore it). Only ``eval``, whose gold and
  predictions files people and other tools write too (JSON Lines lets the last line end without a
  newline), takes it as a line;
- blank lines are yielded as they are: a caller skips them or calls them damaged.

Lines are read one at a time, so memory stays bounded by the longest line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from ..exceptions import InputError

__all__ = ["BOM", "JsonlLine", "iter_objects", "read_lines"]

BOM = b"\xef\xbb\xbf"


class JsonlLine(NamedTuple):
    """One line of a JSONL file: ``data`` starts at byte ``offset`` and holds its newline unless ``torn``."""

    number: int
    offset: int
    data: bytes
    torn: bool

    @property
    def end(self) -> int:
        """The byte offset just after this line."""
        return self.offset + len(self.data)


def read_lines(stream: IO[bytes]) -> Iterator[JsonlLine]:
    """Every line of a binary stream read from its start (see the module docstring for the rule)."""
    offset = 0
    for number, data in enumerate(stream, 1):
        if number == 1 and data.startswith(BOM):
            offset, data = len(BOM), data[len(BOM) :]
            if not data:
                return  # the file holds only the mark
        yield JsonlLine(number, offset, data, not data.endswith(b"\n"))
        offset += len(data)


def iter_objects(
    stream: IO[bytes], where: Path | str, *, hint: str, keep_torn: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_number, object)`` for each non-blank line holding a JSON object.

    A torn last line is skipped, unless ``keep_torn`` (for files people and other tools write: JSON
    Lines lets the last line end without a newline). Raises ``InputError`` naming ``where:line`` for a line that is
    not JSON (with ``hint``) or not an object.
    """
    for line in read_lines(stream):
        if (line.torn and not keep_torn) or not line.data.strip():
            continue
        try:
            record = orjson.loads(line.data.rstrip(b"\r\n"))
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{where}:{line.number}: not valid JSON ({exc})", hint=hint) from None
        if not isinstance(record, dict):
            raise InputError(f"{where}:{line.number}: expected a JSON object, got {type(record).__name__}")
        yield line.number, record
