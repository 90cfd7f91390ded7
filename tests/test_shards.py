"""Shards: ``--shard I/N`` parsing, the stable id hash, the filter's count and digest, a shard's own
output writer (global indices, resume) and the manifest. No engine: these are pure functions and files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import orjson
import pytest

from vllm_extract.cli.exit_codes import for_error
from vllm_extract.exceptions import ConfigurationError, OutputError
from vllm_extract.output.files import manifest_path
from vllm_extract.output.shards import (
    ShardOutputWriter,
    ShardSpec,
    parse_shard,
    read_manifest,
    remove_manifest,
    shard_of,
    write_manifest,
)
from vllm_extract.readers import BadInput, Document, SkippedFile
from vllm_extract.run.shards import ShardFilter


def test_parse_shard_is_zero_based_and_validated():
    assert parse_shard("0/4") == ShardSpec(0, 4)
    assert parse_shard(" 3/4 ") == ShardSpec(3, 4)
    assert str(parse_shard("2/3")) == "2/3"
    for bad in ("4/4", "1/0", "a/3", "3", "1/2/3", "-1/3", ""):
        with pytest.raises(ConfigurationError) as info:
            parse_shard(bad)
        assert for_error(info.value) == 2
    with pytest.raises(ConfigurationError, match="numbered 0 to 3"):
        parse_shard("4/4")


def test_shard_of_is_a_fixed_function_of_the_id():
    # Pinned values: changing the hash would scatter documents of running jobs over other shards.
    assert [shard_of(i, 3) for i in ("doc-1", "court-opinion", "examples/docs/news-item.md", "é✓ unicode", "")] == [
        1,
        1,
        2,
        0,
        1,
    ]
    assert shard_of("doc-1", 1000) == 401
    expected = int.from_bytes(hashlib.sha256(b"doc-1").digest()[:8], "big") % 7
    assert shard_of("doc-1", 7) == expected
    assert all(shard_of(f"id-{n}", 1) == 0 for n in range(50))


def test_shard_of_does_not_depend_on_the_process_hash_seed():
    code = "from vllm_extract.output.shards import shard_of; print([shard_of(f'd{n}', 5) for n in range(40)])"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env=dict(os.environ, PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "1", "12345")
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == str([shard_of(f"d{n}", 5) for n in range(40)])


def test_shards_partition_the_ids_evenly():
    ids = [f"doc-{n}" for n in range(3000)]
    counts = [sum(shard_of(i, 3) == k for i in ids) for k in range(3)]
    assert sum(counts) == 3000 and min(counts) > 900


def _items():
    return [
        Document("a", "alpha", "in.jsonl", 0, line=1),
        BadInput("in.jsonl:2", "in.jsonl", 1, "malformed_json", "bad", line=2),
        SkippedFile("folder/x.bin"),
        Document("folder/b.txt", "beta", "folder/b.txt", 2),
        Document("c", "gamma", "in.jsonl", 3, line=3),
    ]


def test_filter_keeps_its_shard_and_counts_and_hashes_everything():
    kept = []
    digests = set()
    for k in range(3):
        shard_filter = ShardFilter(_items(), ShardSpec(k, 3))
        out = list(shard_filter)
        assert shard_filter.exhausted and shard_filter.total == 4
        digests.add(shard_filter.digest)
        assert any(isinstance(i, SkippedFile) for i in out)  # every shard lists skipped files
        docs = [i for i in out if not isinstance(i, SkippedFile)]
        assert shard_filter.kept == len(docs)
        assert all(shard_of(i.id, 3) == k for i in docs)
        kept += [i.index for i in docs]
    assert sorted(kept) == [0, 1, 2, 3]  # each item in exactly one shard
    assert len(digests) == 1  # every shard saw the same inputs
    changed = _items()
    changed[0] = Document("a", "ALPHA", "in.jsonl", 0, line=1)
    other = ShardFilter(changed, ShardSpec(0, 3))
    list(other)
    assert other.digest not in digests  # a changed text changes the digest


def test_filter_is_not_exhausted_when_the_run_stops_early():
    shard_filter = ShardFilter(_items(), ShardSpec(0, 1))
    next(iter(shard_filter))
    assert not shard_filter.exhausted


def _record(doc_id: str, index: int) -> dict:
    return {
        "id": doc_id,
        "index": index,
        "source": "in.jsonl",
        "line": index + 1,
        "text_sha256": "0" * 64,
        "fingerprint": "0123456789abcdef",
        "status": "ok",
        "metadata": {},
        "entities": [],
        "chunks": 1,
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        "ungrounded": 0,
    }


def _ids_of(shard: ShardSpec, count: int) -> list[tuple[str, int]]:
    found = [(f"doc-{n}", n) for n in range(200) if shard.owns(f"doc-{n}")]
    return found[:count]


def test_shard_writer_keeps_global_indices_and_resumes(tmp_path, caplog):
    shard = ShardSpec(1, 3)
    out = tmp_path / "out-1.jsonl"
    ids = _ids_of(shard, 4)
    with ShardOutputWriter(out, shard) as writer:
        writer.write([_record(i, n) for i, n in ids[:3]])
    assert "written on line" not in caplog.text  # global indices are not a pipeline bug here
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["index"] for r in lines] == [n for _, n in ids[:3]]
    with ShardOutputWriter(out, shard, resume=True) as writer:
        assert sorted(writer.done) == [n for _, n in ids[:3]]
        writer.write([_record(*ids[3])])
    assert out.read_bytes().count(b"\n") == 4


def test_shard_writer_refuses_a_file_of_another_shard(tmp_path):
    out = tmp_path / "out.jsonl"
    (other_id, other_index), *_ = _ids_of(ShardSpec(2, 3), 1)
    out.write_bytes(orjson.dumps(_record(other_id, other_index)) + b"\n")
    before = out.read_bytes()
    with pytest.raises(OutputError, match="belongs to shard 2/3, not 1/3"):
        ShardOutputWriter(out, ShardSpec(1, 3), resume=True).open()
    assert out.read_bytes() == before


def test_shard_writer_refuses_records_out_of_order(tmp_path):
    shard = ShardSpec(0, 3)
    (a, ia), (b, ib) = _ids_of(shard, 2)
    out = tmp_path / "out.jsonl"
    out.write_bytes(orjson.dumps(_record(b, ib)) + b"\n" + orjson.dumps(_record(a, ia)) + b"\n")
    with pytest.raises(OutputError, match="records come in input order"):
        ShardOutputWriter(out, shard, resume=True).open()


def test_manifest_round_trip_and_removal(tmp_path):
    out = tmp_path / "out.jsonl"
    assert read_manifest(out) is None
    manifest = {
        "format": 1,
        "shard": {"index": 0, "count": 2},
        "inputs_total": 5,
        "inputs_sha256": "ab",
        "fingerprint": "cd",
        "id_field": "id",
        "text_field": "text",
        "inputs": ["docs"],
        "globs": ["*.txt"],
    }
    path = write_manifest(out, manifest)
    assert path == manifest_path(out) == tmp_path / "out.jsonl.shard.json"
    assert read_manifest(out) == manifest
    assert not list(tmp_path.glob("*.tmp"))
    remove_manifest(out)
    remove_manifest(out)  # twice is fine
    assert read_manifest(out) is None
    manifest_path(out).write_text('{"something": "else"}')
    with pytest.raises(OutputError, match="not a vllm-extract shard manifest"):
        read_manifest(out)
