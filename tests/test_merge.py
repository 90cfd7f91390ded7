"""``run --shard I/N`` + ``vllm-extract merge``: three shards over a mixed input (a JSONL file and a
folder) merge into the very file an unsharded run writes; a missing shard, a document seen twice,
an unfinished shard and shards of different runs are named and refused (exit 1, nothing written).

Generation goes through ``EmptyEntities``, a stand-in at the generation seam answering every
request with no entities: what is tested is which documents go where and how they come back
together, not the engine (which the Ray and pipeline tests run for real).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from vllm_extract.cli import app
from vllm_extract.clients.base import VLLMClientInterface, VLLMClientType, VLLMRequest, VLLMResponse
from vllm_extract.config import ExtractionConfig, Settings, VLLMConfig
from vllm_extract.exceptions import MergeError
from vllm_extract.output.files import manifest_path, run_settings_path
from vllm_extract.output.shards import read_manifest, shard_of
from vllm_extract.run.merge import merge_shards
from vllm_extract.run.runner import RunOptions, run_job

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


class EmptyEntities(VLLMClientInterface):
    """Answers every request with an empty entity list (the generation seam, no engine)."""

    client_type = VLLMClientType.DIRECT_API

    def __init__(self, model_path: Path, dtype: str | None = None) -> None:
        super().__init__(VLLMConfig(model=str(model_path), max_completion_tokens=32))
        self.model_path = str(model_path)
        self.requests: list[VLLMRequest] = []
        if dtype is not None:  # as an engine reports what it loaded
            self.engine_info = {"dtype": dtype, "max_num_batched_tokens": 16384}

    async def connect(self) -> bool:
        return True

    async def generate_one(self, request: VLLMRequest) -> VLLMResponse:
        self.requests.append(request)
        return VLLMResponse(request.request_id, content='{"entities": []}', finish_reason="stop",
                            prompt_tokens=len(request.prompt_token_ids or ()), completion_tokens=5)  # fmt: skip

    def get_tokenizer(self) -> Any:
        raise AssertionError("the tiny model's folder is local: its own tokenizer counts")


def write_mixed(folder: Path) -> list[str]:
    """A JSONL file (with a malformed line and an empty text) and a folder, as absolute paths."""
    jsonl = folder / "documents.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    lines = (ROOT / "examples" / "documents.jsonl").read_bytes().splitlines()
    extra = [b'{"id": "broken", "text": ', orjson.dumps({"id": "blank", "text": "  "})]
    jsonl.write_bytes(b"\n".join([*lines[:2], *extra, *lines[2:]]) + b"\n")
    shutil.copytree(ROOT / "examples" / "docs", folder / "docs")
    return [str(jsonl), str(folder / "docs")]


@dataclass
class ShardSet:
    inputs: list[str]
    whole: Path  # the unsharded run's output
    outs: list[Path]  # shard 0, 1, 2

    def copy_to(self, folder: Path) -> list[Path]:
        """The shard outputs, their manifests and saved settings, copied (for tests that change them)."""
        copies = []
        for out in self.outs:
            shutil.copy(out, folder / out.name)
            shutil.copy(manifest_path(out), manifest_path(folder / out.name))
            shutil.copy(run_settings_path(out), run_settings_path(folder / out.name))
            copies.append(folder / out.name)
        return copies


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> ShardSet:
    """One unsharded run and its three shards over the mixed input (tests must not change them)."""
    folder = tmp_path_factory.mktemp("shards")
    inputs = write_mixed(folder / "in")
    whole = folder / "whole.jsonl"
    run(inputs, whole, tiny_model_path)
    return ShardSet(inputs, whole, run_shards(inputs, folder, tiny_model_path))


def settings_for(model: Path) -> Settings:
    return Settings(VLLMConfig(model=str(model), max_completion_tokens=32), ExtractionConfig())


def run(inputs: list[str], out: Path, model: Path, **options: Any) -> Any:
    client = EmptyEntities(model)
    return asyncio.run(run_job(inputs, out, settings_for(model), RunOptions(**options), client=client))


def run_shards(inputs: list[str], folder: Path, model: Path, count: int = 3) -> list[Path]:
    outs = []
    for index in range(count):
        out = folder / f"out-{index}.jsonl"
        run(inputs, out, model, shard=(index, count))
        outs.append(out)
    return outs


def test_three_shards_merge_into_the_unsharded_output(shards, tmp_path):
    records = [orjson.loads(line) for line in shards.whole.read_bytes().splitlines()]
    assert len(records) >= 10 and {r["status"] for r in records} == {"ok", "error"}  # bad inputs too
    assert not manifest_path(shards.whole).exists()  # only shard runs write manifests
    per_shard = [[orjson.loads(line) for line in out.read_bytes().splitlines()] for out in shards.outs]
    for index, shard_records in enumerate(per_shard):
        assert shard_records, f"shard {index} is empty: pick an input that fills all three"
        assert all(shard_of(r["id"], 3) == index for r in shard_records)
        indices = [r["index"] for r in shard_records]
        assert indices == sorted(indices)  # global positions, in input order
        manifest = read_manifest(shards.outs[index])
        assert manifest is not None
        assert manifest["shard"] == {"index": index, "count": 3}
        assert manifest["inputs_total"] == len(records) and manifest["records"] == len(shard_records)
        assert manifest["fingerprint"] == records[0]["fingerprint"]
    assert sum(len(s) for s in per_shard) == len(records)

    merged = tmp_path / "merged.jsonl"
    result = merge_shards(list(reversed(shards.outs)), merged)  # the order files are given in does not matter
    assert merged.read_bytes() == shards.whole.read_bytes()
    assert (result.records, result.shards, result.inputs_total) == (len(records), 3, len(records))
    assert result.errors == sum(r["status"] == "error" for r in records)


def test_shard_report(shards, tmp_path, tiny_model_path):
    out = tmp_path / "out-2.jsonl"
    result = run(shards.inputs, out, tiny_model_path, shard=(2, 3), report_path=tmp_path / "report.json")
    assert result.report["shard"]["index"] == 2 and result.report["shard"]["manifest"] == str(manifest_path(out))
    assert result.report["engine"] == "vllm"
    assert orjson.loads((tmp_path / "report.json").read_bytes())["shard"]["count"] == 3
    assert out.read_bytes() == shards.outs[2].read_bytes()


def test_missing_shard_is_named_with_its_documents(shards, tmp_path):
    outs = shards.outs
    gone = [orjson.loads(line)["id"] for line in outs[1].read_bytes().splitlines()]
    merged = tmp_path / "merged.jsonl"
    with pytest.raises(MergeError) as info:
        merge_shards([outs[0], outs[2]], merged)
    problems = "\n".join(info.value.problems)
    assert "shard 1/3 is missing" in problems
    assert f"{len(gone)} of " in problems and "document(s) are missing" in problems
    for doc_id in gone:  # the inputs are readable here: missing documents are named by id
        assert repr(doc_id) in problems
    assert not merged.exists()


def test_document_seen_twice_is_named(shards, tmp_path):
    outs = shards.outs
    copy = tmp_path / "copy-of-0.jsonl"
    shutil.copy(outs[0], copy)
    shutil.copy(manifest_path(outs[0]), manifest_path(copy))
    first = orjson.loads(outs[0].read_bytes().splitlines()[0])
    with pytest.raises(MergeError) as info:
        merge_shards([*outs, copy], tmp_path / "merged.jsonl")
    problems = "\n".join(info.value.problems)
    assert "shard 0/3 is given 2 times" in problems
    assert f"{first['id']!r} (position {first['index']}) 2 times" in problems
    assert str(copy) in problems


def test_a_record_in_two_shard_files_is_named(shards, tmp_path):
    # Shard 0 finished, then somebody appended one of its records to shard 2's file.
    outs = shards.copy_to(tmp_path)
    line = outs[0].read_bytes().splitlines()[0]
    with open(outs[2], "ab") as stream:
        stream.write(line + b"\n")
    doc = orjson.loads(line)
    with pytest.raises(MergeError) as info:
        merge_shards(outs, tmp_path / "merged.jsonl")
    problems = "\n".join(info.value.problems)
    assert f"{doc['id']!r} (position {doc['index']}) 2 times" in problems
    assert "does not belong to shard 2/3" in problems
    assert "its manifest says" in problems


def test_a_damaged_manifest_is_named_not_a_traceback(shards, tmp_path):
    outs = shards.copy_to(tmp_path)
    manifest = orjson.loads(manifest_path(outs[2]).read_bytes())
    for shard in ("2/3", {"index": "x", "count": 3}, {"index": 3, "count": 3}):
        manifest_path(outs[2]).write_bytes(orjson.dumps(manifest | {"shard": shard}))
        result = runner.invoke(app, ["merge", *map(str, outs), "--out", str(tmp_path / "m.jsonl")])
        assert result.exit_code == 2 and "damaged shard manifest" in result.output, result.output
    assert not (tmp_path / "m.jsonl").exists()


def test_an_existing_merge_output_needs_overwrite(shards, tmp_path):
    merged = tmp_path / "m.jsonl"
    merged.write_text("keep me\n")
    result = runner.invoke(app, ["merge", *map(str, shards.outs), "--out", str(merged)])
    assert result.exit_code == 2 and "--overwrite" in result.output and "--resume" not in result.output
    assert merged.read_text() == "keep me\n"


def test_unfinished_shard_is_refused_then_resumed(shards, tmp_path, tiny_model_path):
    outs = shards.copy_to(tmp_path)
    stop = threading.Event()
    stop.set()  # stop after the first window: an interrupted shard run
    interrupted = run(shards.inputs, outs[1], tiny_model_path, shard=(1, 3), overwrite=True, stop_event=stop)
    assert interrupted.summary.interrupted
    assert read_manifest(outs[1]) is None  # an unfinished shard has no manifest
    with pytest.raises(MergeError) as info:
        merge_shards(outs, tmp_path / "merged.jsonl")
    assert any("no manifest" in p and "did not finish" in p for p in info.value.problems)
    run(shards.inputs, outs[1], tiny_model_path, shard=(1, 3), resume=True)
    merge_shards(outs, tmp_path / "merged.jsonl")
    assert (tmp_path / "merged.jsonl").read_bytes() == shards.whole.read_bytes()


def test_shards_of_different_runs_are_refused(shards, tmp_path, tiny_model_path):
    outs = shards.copy_to(tmp_path)
    other = Settings(VLLMConfig(model=str(tiny_model_path), max_completion_tokens=31), ExtractionConfig())
    options = RunOptions(shard=(2, 3), overwrite=True)
    asyncio.run(run_job(shards.inputs, outs[2], other, options, client=EmptyEntities(tiny_model_path)))
    with pytest.raises(MergeError) as info:
        merge_shards(outs, tmp_path / "merged.jsonl")
    assert any("disagree on the run fingerprint" in p for p in info.value.problems)
    named = [p for p in info.value.problems if "ran with different settings" in p]
    assert len(named) == 1 and named[0].startswith(f"{outs[0]} and {outs[2]} ran with different settings: ")
    assert "max_completion_tokens 32 -> 31" in named[0] and "--dtype" not in named[0]


def test_shards_of_different_dtypes_are_refused_with_the_advice_to_pin_it(shards, tmp_path, tiny_model_path):
    """Issue 19: on a fleet of mixed CPUs each box chooses its own dtype; merge names the difference."""
    outs = []
    for index, dtype in enumerate(("bfloat16", "bfloat16", "float32")):
        out = tmp_path / f"out-{index}.jsonl"
        options = RunOptions(shard=(index, 3))
        client = EmptyEntities(tiny_model_path, dtype)
        result = asyncio.run(run_job(shards.inputs, out, settings_for(tiny_model_path), options, client=client))
        assert result.report["plan"]["dtype"] == dtype
        outs.append(out)
    with pytest.raises(MergeError) as info:
        merge_shards(outs, tmp_path / "merged.jsonl")
    (named,) = [p for p in info.value.problems if "ran with different settings" in p]
    assert f"{outs[0]} and {outs[2]} ran with different settings: dtype 'bfloat16' -> 'float32'" in named
    assert "pin one with --dtype" in named and "rerun the shards that differ" in named


def test_shards_over_different_inputs_are_refused(shards, tmp_path, tiny_model_path):
    outs = shards.copy_to(tmp_path)
    changed = [str(tmp_path / "in" / Path(p).name) for p in shards.inputs]
    shutil.copytree(Path(shards.inputs[0]).parent, tmp_path / "in")
    jsonl = Path(changed[0])
    jsonl.write_bytes(jsonl.read_bytes().replace(b"UNITED STATES", b"UNITED NATIONS"))
    run(changed, outs[0], tiny_model_path, shard=(0, 3), overwrite=True)
    with pytest.raises(MergeError) as info:
        merge_shards(outs, tmp_path / "merged.jsonl")
    assert any("they read different inputs" in p for p in info.value.problems)


def test_merge_cli_exit_codes(shards, tmp_path):
    outs = shards.outs
    merged = tmp_path / "merged.jsonl"
    refused = runner.invoke(app, ["merge", str(outs[0]), str(outs[2]), "--out", str(merged)])
    assert refused.exit_code == 5, refused.output
    assert "shard 1/3 is missing" in refused.output and "nothing was written" in refused.output
    assert not merged.exists()
    done = runner.invoke(app, ["merge", *map(str, outs), "--out", str(merged)])
    assert done.exit_code == 0, done.output
    assert "merged 3 shards" in done.output
    again = runner.invoke(app, ["merge", *map(str, outs), "--out", str(merged)])
    assert again.exit_code == 2 and "already exists" in again.output
    missing = runner.invoke(app, ["merge", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "m2.jsonl")])
    assert missing.exit_code == 2


def test_run_cli_rejects_a_bad_shard(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path), "--out", str(tmp_path / "o.jsonl"), "--shard", "3/3"])
    assert result.exit_code == 2 and "0 to 2" in result.output
