"""Merging shard outputs (``run --shard I/N``) into one output in input order.

``merge_shard_files(paths, out)`` reads every shard output and its manifest (``OUT.shard.json``,
written when a shard run finishes; see ``shards``), checks the set, and only then writes
``out``: the records sorted by their global ``index``, in canonical form, so the merged file has
the lines an unsharded run writes (records carry no shard field: which shard wrote a record is in
the manifests, and a record's shard follows from its id).

What is checked (every problem is collected and reported together; nothing is written when any
is found):

- every file has a manifest (a shard without one did not finish: rerun it with ``--resume``);
- all manifests agree on the shard count, the number of inputs, the inputs digest (the shards
  read the same inputs) and the run fingerprint; every record carries that fingerprint;
- every shard ``0 .. N-1`` is given exactly once (a missing shard is named ``shard 2/3``);
- each file holds as many records as its manifest says, and each record's id hashes to the
  file's shard;
- every input position ``0 .. inputs-1`` appears exactly once across all files: a missing
  document is named by position (and by id and ``source:line`` when ``name_missing`` can read the
  inputs named in the manifests: ``run.merge`` passes one that does), a duplicated one by id,
  position and the files holding it.

The total number of inputs comes from the manifests, not from the records: only the shard runs
read the whole input, and the highest index seen cannot reveal documents missing at the end.

Memory: one small tuple per record (position, file, byte offset, length, id); records are
re-read from their files while writing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from ..exceptions import MergeError, OutputError, RecordError
from .files import manifest_path
from .jsonl import read_lines
from .records import Record, parse_record
from .resume import (
    BATCHING_PREFIX,
    PIN_DTYPE_HINT,
    describe_settings_change,
    dtype_change,
    read_run_settings,
    write_run_settings,
)
from .shards import read_manifest, shard_of
from .writer import OutputWriter

__all__ = ["MergeResult", "MissingNamer", "merge_shard_files"]

logger = logging.getLogger(__name__)

NAMED_AT_MOST = 20  # problems list at most this many documents each, then a count
_WRITE_BATCH = 1000


MissingNamer = Callable[[list[dict[str, Any]], set[int]], dict[int, str] | None]
"""Names missing input positions from the manifests' inputs: ``{position: "'id' (source:line)"}``."""


@dataclass
class MergeResult:
    """What a merge wrote: ``records`` lines (``ok`` + ``errors``) from ``shards`` shard files."""

    out: Path
    records: int
    ok: int
    errors: int
    shards: int
    inputs_total: int
    fingerprint: str


@dataclass
class _Entry:
    index: int
    file: int
    offset: int
    length: int
    id: str


@dataclass
class _Shard:
    path: Path
    manifest: dict[str, Any] | None
    entries: list[_Entry] = field(default_factory=list)


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:NAMED_AT_MOST])
    return shown + (f", ... ({len(items) - NAMED_AT_MOST} more)" if len(items) > NAMED_AT_MOST else "")


def _scan(path: Path, number: int, problems: list[str]) -> _Shard:
    """Read a shard output's manifest and index its records (no record is kept in memory)."""
    shard = _Shard(path, read_manifest(path))
    if shard.manifest is None:
        problems.append(
            f"{path}: no manifest {manifest_path(path).name}: that shard run did not finish "
            "(rerun it with --resume) or the file is not the output of a run with --shard"
        )
    spec = (shard.manifest or {}).get("shard") or {}
    count = spec.get("count")
    fingerprint = (shard.manifest or {}).get("fingerprint")
    wrong_fp: list[str] = []
    foreign: list[str] = []
    with open(path, "rb") as stream:
        for line in read_lines(stream):
            if line.torn:
                problems.append(f"{path}: line {line.number} is torn (the run was cut while writing)")
                break
            try:
                record = parse_record(line.data, number=line.number)
            except RecordError as exc:
                problems.append(f"{path}: {exc.message}")
                continue
            entry = _Entry(record.index, number, line.offset, len(line.data), record.id)
            shard.entries.append(entry)
            if fingerprint is not None and record.fingerprint != fingerprint:
                wrong_fp.append(f"{entry.id!r} ({record.fingerprint})")
            if isinstance(count, int) and count > 0 and shard_of(entry.id, count) != spec.get("index"):
                foreign.append(repr(entry.id))
    if wrong_fp:
        problems.append(f"{path}: {len(wrong_fp)} record(s) from another run (fingerprint): {_names(wrong_fp)}")
    if foreign:
        problems.append(
            f"{path}: {len(foreign)} record(s) whose id does not belong to shard "
            f"{spec.get('index')}/{count}: {_names(foreign)}"
        )
    expected = (shard.manifest or {}).get("records")
    if isinstance(expected, int) and expected != len(shard.entries):
        problems.append(
            f"{path}: holds {len(shard.entries)} records but its manifest says {expected}: "
            "the file changed after the run finished"
        )
    return shard


def _agree(shards: list[_Shard], key: str, label: str, problems: list[str]) -> Any:
    """The value all manifests hold for ``key``; a problem naming each file that differs."""
    values: dict[str, list[str]] = {}
    for shard in shards:
        if shard.manifest is not None:
            value = shard.manifest.get(key)
            values.setdefault(orjson.dumps(value).decode(), []).append(str(shard.path))
    if len(values) > 1:
        listed = "; ".join(f"{value} in {', '.join(files)}" for value, files in values.items())
        problems.append(f"the shards disagree on {label}: {listed}")
        return None
    return orjson.loads(next(iter(values))) if values else None


def merge_shard_files(
    paths: Sequence[Path | str],
    out: Path | str,
    *,
    overwrite: bool = False,
    name_missing: MissingNamer | None = None,
) -> MergeResult:
    """Check shard outputs (see the module docstring) and write them to ``out`` in input order.

    ``name_missing(manifests, positions)`` names missing documents (``{position: "'id'
    (source:line)"}``), or returns None when it cannot; without it they are named by position.

    The paths are checked first by the caller (``run.merge.merge_shards``: every shard output is a
    file and ``out`` is none of them). Raises ``MergeError`` listing every problem found,
    before writing anything; ``OutputError`` (exit 2) when ``out`` exists and ``overwrite`` is
    false; ``LockHeldError`` (exit 4) when another run writes ``out``.
    """
    files = [Path(p) for p in paths]
    out = Path(out)
    if out.exists() and out.stat().st_size > 0 and not overwrite:
        raise OutputError(f"{out} already exists and would be overwritten", hint="pass --overwrite to replace it")
    problems: list[str] = []
    shards = [_scan(path, number, problems) for number, path in enumerate(files)]
    counts = _agree([_with(s, "count") for s in shards], "_count", "the shard count", problems)
    total = _agree(shards, "inputs_total", "the number of inputs", problems)
    _agree(shards, "inputs_sha256", "the inputs (their digests differ: they read different inputs)", problems)
    fingerprint = _agree(shards, "fingerprint", "the run fingerprint", problems)
    if fingerprint is None:
        problems.extend(_settings_differences(shards))

    if isinstance(counts, int):
        by_index: dict[int, list[str]] = {}
        for shard in shards:
            if shard.manifest is not None:
                by_index.setdefault(int(shard.manifest["shard"]["index"]), []).append(str(shard.path))
        absent = [i for i in range(counts) if i not in by_index]
        for i in absent:
            problems.append(f"shard {i}/{counts} is missing: no finished output of it was given")
        for i, holders in sorted(by_index.items()):
            if len(holders) > 1:
                problems.append(f"shard {i}/{counts} is given {len(holders)} times: {', '.join(holders)}")

    seen: dict[int, list[_Entry]] = {}
    for shard in shards:
        for entry in shard.entries:
            seen.setdefault(entry.index, []).append(entry)
    duplicated = sorted(i for i, entries in seen.items() if len(entries) > 1)
    if duplicated:
        described = []
        for i in duplicated:
            entries = seen[i]
            where = ", ".join(str(files[e.file]) for e in entries)
            described.append(f"{entries[0].id!r} (position {i}) {len(entries)} times, in {where}")
        problems.append(f"{len(duplicated)} document(s) appear more than once: {_names(described)}")
    if isinstance(total, int):
        beyond = sorted(i for i in seen if not 0 <= i < total)
        if beyond:
            problems.append(
                f"{len(beyond)} record(s) at positions beyond the {total} inputs: {_names([str(i) for i in beyond])}"
            )
        missing = sorted(set(range(total)) - set(seen))
        if missing:
            manifests = [s.manifest for s in shards if s.manifest is not None]
            names = (name_missing(manifests, set(missing)) if name_missing else None) or {}
            described = [f"{names[i]} at position {i}" if i in names else f"position {i}" for i in missing]
            problems.append(f"{len(missing)} of {total} document(s) are missing: {_names(described)}")
    elif not problems:
        problems.append("no shard manifest gives the number of inputs")
    if problems:
        raise MergeError(problems)

    assert isinstance(total, int) and isinstance(fingerprint, str) and isinstance(counts, int)
    order = sorted((entries[0] for entries in seen.values()), key=lambda e: e.index)
    ok = errors = 0
    streams: list[IO[bytes]] = [open(path, "rb") for path in files]  # noqa: SIM115 - closed below
    try:
        with OutputWriter(out, overwrite=overwrite) as writer:
            saved = next((read_run_settings(f) for f in files if read_run_settings(f) is not None), None)
            if saved is not None and saved[0] == fingerprint:
                write_run_settings(out, *saved)  # so a later --reuse or --resume can name changed settings
            batch: list[Record] = []
            for entry in order:
                stream = streams[entry.file]
                stream.seek(entry.offset)
                record = parse_record(stream.read(entry.length))
                ok += record.status == "ok"
                errors += record.status == "error"
                batch.append(record)
                if len(batch) >= _WRITE_BATCH:
                    writer.write(batch)
                    batch = []
            writer.write(batch)
    finally:
        for stream in streams:
            stream.close()
    return MergeResult(out, len(order), ok, errors, counts, total, fingerprint)


def _settings_differences(shards: list[_Shard]) -> list[str]:
    """When the shards' fingerprints differ: the settings that differ, from the settings each shard
    run saved beside its output (``OUT.run.json``), one problem per fingerprint after the first; a
    dtype difference (machines with different CPUs) comes with the advice to pin ``--dtype``."""
    first: tuple[str, dict[str, Any], Path] | None = None
    seen: set[str] = set()
    found: list[str] = []
    for shard in shards:
        fingerprint = (shard.manifest or {}).get("fingerprint")
        saved = read_run_settings(shard.path)
        if not isinstance(fingerprint, str) or fingerprint in seen or saved is None or saved[0] != fingerprint:
            continue
        seen.add(fingerprint)
        settings = {k: v for k, v in saved[1].items() if not k.startswith(BATCHING_PREFIX)}
        if first is None:
            first = (fingerprint, settings, shard.path)
            continue
        changes = describe_settings_change(first[1], settings)
        if not changes:
            continue
        text = f"{first[2]} and {shard.path} ran with different settings: {', '.join(changes)}"
        if dtype_change(first[1], settings):
            text += f"; {PIN_DTYPE_HINT}, and rerun the shards that differ"
        found.append(text)
    return found


def _with(shard: _Shard, key: str) -> _Shard:
    """A view of ``shard`` whose manifest has ``_count`` = its shard count (for ``_agree``)."""
    if shard.manifest is None:
        return shard
    return _Shard(shard.path, {"_count": (shard.manifest.get("shard") or {}).get(key)})
