"""Shards, the output side: which shard a document belongs to, a shard's output and its manifest.

``run --shard I/N`` keeps the documents of shard ``I`` of ``N`` (0-based: ``0/4`` .. ``3/4``, as
Slurm array task ids and Kubernetes indexed-job completion indexes count) and writes its own
output, lock and resume state. Which shard a document belongs to depends only on its id:

    shard_of(id, N) = int.from_bytes(sha256(id as UTF-8)[:8], "big") % N

the same on every machine, Python version and process (Python's ``hash`` is salted per process).
Documents with the same id always land in the same shard, so ``duplicate_id`` flags match an
unsharded run's. Records keep their global ``index`` (position in the whole input), which is what
``vllm-extract merge`` sorts by (``ShardOutputWriter`` keeps them).

A shard that finishes writes ``OUT.shard.json`` (the *manifest*) beside its output: which shard,
how many inputs there are in all and their digest (counted on the input side, ``run.shards``),
how many records it wrote, and the run's fingerprint. A merge trusts the total and the digest only
from manifests, so an unfinished shard, or shards run over different inputs, cannot merge into a
silently incomplete file.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..exceptions import ConfigurationError, OutputError
from .files import atomic_write, manifest_path
from .records import Record
from .resume import DoneRecord
from .writer import OutputWriter

__all__ = [
    "MANIFEST_FORMAT",
    "ShardOutputWriter",
    "ShardSpec",
    "parse_shard",
    "read_manifest",
    "remove_manifest",
    "shard_of",
    "write_manifest",
]

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """Shard ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigurationError(f"shard count must be at least 1, got {self.count}", hint="use --shard I/N")
        if not 0 <= self.index < self.count:
            raise ConfigurationError(
                f"shard {self.index}/{self.count} does not exist: shards are numbered 0 to {self.count - 1}",
                hint=f"use --shard I/{self.count} with I from 0 to {self.count - 1} (0-based)",
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, doc_id: str) -> bool:
        """True when the document with this id belongs to this shard."""
        return shard_of(doc_id, self.count) == self.index

    def as_dict(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}


def parse_shard(text: str) -> ShardSpec:
    """``"I/N"`` -> ``ShardSpec(I, N)``; raises ``ConfigurationError`` (exit 2) for anything else."""
    parts = text.strip().split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigurationError(
            f"--shard {text!r} is not I/N", hint="e.g. --shard 0/4 for the first of four shards (0-based)"
        )
    return ShardSpec(int(parts[0]), int(parts[1]))


def shard_of(doc_id: str, count: int) -> int:
    """The shard (0 .. count-1) of a document id: the first 8 bytes of its SHA-256, modulo ``count``."""
    digest = hashlib.sha256(doc_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


def write_manifest(out: Path | str, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` next to ``out`` atomically (``files.atomic_write``); return its path.

    Raises ``OutputError`` when it cannot be written.
    """
    path = manifest_path(out)
    try:
        atomic_write(path, orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    except OSError as exc:
        raise OutputError(f"cannot write the shard manifest {path}: {exc.strerror}") from exc
    return path


def remove_manifest(out: Path | str) -> None:
    """Remove a manifest left by an earlier run of this output (it is stale until this run finishes)."""
    path = manifest_path(out)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"cannot remove the stale shard manifest {path}: {exc.strerror}") from exc


def read_manifest(out: Path | str) -> dict[str, Any] | None:
    """The manifest of a shard output, or None when there is none (the shard did not finish).

    Raises ``OutputError`` when it exists but is not a manifest.
    """
    path = manifest_path(out)
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise OutputError(f"{path} is not a readable shard manifest: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or "shard" not in data:
        raise OutputError(f"{path} is not a vllm-extract shard manifest (format {MANIFEST_FORMAT})")
    wrong = _manifest_problem(data)
    if wrong:
        raise OutputError(
            f"{path} is a damaged shard manifest: {wrong}", hint="rerun that shard with --overwrite to write it again"
        )
    return data


def _manifest_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a manifest's fields (the ones ``merge`` relies on), or None."""

    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    shard = data["shard"]
    if not (isinstance(shard, dict) and count(shard.get("index")) and count(shard.get("count"))):
        return f'\'shard\' must be {{"index": I, "count": N}} with whole numbers, not {shard!r}'
    if shard["index"] >= shard["count"]:
        return f"shard index {shard['index']} is not below the count {shard['count']}"
    if not count(data.get("inputs_total")):
        return "'inputs_total' must be a whole number"
    for key in ("inputs_sha256", "fingerprint", "id_field", "text_field"):
        if not isinstance(data.get(key), str):
            return f"{key!r} must be a string"
    for key in ("inputs", "globs"):
        value = data.get(key)
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return f"{key!r} must be a list of strings"
    return None


class ShardOutputWriter(OutputWriter):
    """The output of one shard: ``OutputWriter`` whose records keep their global ``index``.

    A shard's positions increase but skip the other shards' documents, so the order rule differs
    from ``OutputWriter``'s (line ``n`` holds index ``n - 1``): on resume each record's index must be
    above the one before it and its id must belong to ``shard``; anything else is a damaged file
    (``OutputError``, exit 2, file left as it was). Lock, torn-tail repair, record contract and
    durability are ``OutputWriter``'s.
    """

    def __init__(self, path: Path | str, shard: ShardSpec, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.shard = shard

    def _out_of_place(self, record: Record, number: int, done: dict[int, DoneRecord]) -> str | None:
        previous = next(reversed(done), -1)  # the last record read (indexes increase)
        if record.index <= previous:
            return f"it holds index {record.index} after index {previous} (records come in input order)"
        if not self.shard.owns(record.id):
            return (
                f"its id {record.id!r} belongs to shard "
                f"{shard_of(record.id, self.shard.count)}/{self.shard.count}, not {self.shard}"
            )
        return None

    def _validated(self, record: Mapping[str, Any] | Record, position: int) -> Record:
        # A shard's record sits at its global index, not at its line: check it against itself.
        data = record.to_dict() if isinstance(record, Record) else record
        index = data.get("index")
        own = index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else position
        return super()._validated(record, own)
