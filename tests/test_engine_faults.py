"""Dead engines (issue 19): a killed engine is restarted and its work sent again; a request that
kills every engine is found and marked as poison, within the restart bound.

These tests use the session's second engine (``conftest.cached_client``), built with the test seam
``VLLM_EXTRACT_TEST_CRASH_ON=POISON`` (``clients.engine_loop``): any engine process started while it
is set dies at a step holding a request whose id contains ``POISON``. Every other request runs
normally, so the same engine serves the kill test. Prefix caching is on there (the session's first
engine has it off); issue 22's prefix-cache test (``test_asking``) shares it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import crash_seam

from vllm_extract.clients.direct import DirectVLLMClient
from vllm_extract.config import ExtractionConfig, Settings
from vllm_extract.events import ChunkDone
from vllm_extract.output import read_records
from vllm_extract.run.runner import RunOptions, run_job

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _seam() -> Iterator[None]:
    """Engines restarted during these tests carry the crash seam too (see ``conftest.crash_seam``)."""
    with crash_seam():
        yield


def settings(client: DirectVLLMClient) -> Settings:
    return Settings(client.config, ExtractionConfig(chunk_tokens=400))


def test_an_engine_killed_mid_run_is_restarted_and_every_document_is_written_once(cached_client, tmp_path):
    inputs = [str(ROOT / "examples" / "docs")]
    before = cached_client.engine_pid
    killed: list[int | None] = []

    def kill_after_two_chunks(event: Any) -> None:
        if isinstance(event, ChunkDone) and not killed and event.request_id.endswith("#1"):
            killed.append(cached_client.engine_pid)
            cached_client.kill_engine()  # SIGKILL to the engine process, chunks still in flight

    out = tmp_path / "out.jsonl"
    options = RunOptions(overwrite=True, subscribers=[kill_after_two_chunks], report_path=tmp_path / "report.json")
    result = asyncio.run(run_job(inputs, out, settings(cached_client), options, client=cached_client))
    assert killed == [before]
    records = read_records(out)
    assert [r["index"] for r in records] == list(range(7))
    assert len({r["id"] for r in records}) == 7  # each document written once
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    assert report["summary"]["engine_restarts"] >= 1
    pids = report["summary"]["engine"]["engine_pids"]
    assert pids[0] == before and cached_client.engine_pid not in (None, before) and pids[-1] == cached_client.engine_pid
    assert result.outcome == "ok"


def test_a_request_that_kills_every_engine_is_poison_and_the_rest_are_ok(cached_client, tmp_path):
    src = tmp_path / "docs.jsonl"
    docs = [{"id": f"memo-{i}", "text": f"Memo {i}. Acme Corp. paid Jane Roe ${i},000 in Boston."} for i in range(5)]
    docs.insert(2, {"id": "POISON-memo", "text": "Memo P. Beta LLC sued Gamma Inc. in Denver."})
    src.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    out = tmp_path / "out.jsonl"
    config = settings(cached_client)
    bound = cached_client.config.max_engine_restarts
    result = asyncio.run(run_job([str(src)], out, config, RunOptions(overwrite=True), client=cached_client))
    records = read_records(out)
    assert [r["id"] for r in records] == [d["id"] for d in docs]
    kinds = {r["id"]: (r["status"], r.get("error", {}).get("kind")) for r in records}
    assert kinds.pop("POISON-memo") == ("error", "poison_request")
    assert all(v == ("ok", None) for v in kinds.values()), kinds
    # crash, crash again with it in the engine (it becomes a suspect, run alone), crash alone: poison
    assert result.summary.engine_restarts == 3 <= bound
    assert result.summary.poison_requests == 1
    assert result.outcome == "document_errors"
