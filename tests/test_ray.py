"""The Ray backend (``run --engine ray``, ``--dp N``) on a real local Ray cluster started here.

The slow tests start one Ray instance on 127.0.0.1 (``ray.init(num_cpus=2)``) and two replicas of
the tiny model (one CPU each): data parallel on 2 cores, then a replica lost for good (its slice
goes to the other), then, on the one left, the comparison with the local direct run, error
isolation, input order, the report and a replica killed mid-batch (Ray restarts it and retries).
They run in file order and share the replicas (one model load less). The fast tests check what
needs no cluster: option errors, the missing extra.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import engine_config
from typer.testing import CliRunner

from vllm_extract.cli import app
from vllm_extract.clients.base import VLLMRequest
from vllm_extract.clients.direct import engine_kwargs
from vllm_extract.clients.ray import RayOptions, RayVLLMClient, slice_bounds
from vllm_extract.config import ExtractionConfig, Settings, VLLMConfig
from vllm_extract.exceptions import ConfigurationError
from vllm_extract.readers import Document, iter_documents
from vllm_extract.run.pipeline import ExtractionPipeline
from vllm_extract.run.plan import plan_for_client, resolve_model
from vllm_extract.run.runner import RunOptions, run_job

ROOT = Path(__file__).resolve().parent.parent
MAX_TOKENS = 32
runner = CliRunner()


# --- fast: no cluster ---------------------------------------------------------------------------


def test_slices_are_contiguous_balanced_and_cover_everything():
    assert slice_bounds(5, 2) == [(0, 3), (3, 5)]
    assert slice_bounds(2, 4) == [(0, 1), (1, 2)]  # no empty slice
    assert slice_bounds(0, 3) == []
    for n in range(0, 40):
        for parts in range(1, 6):
            bounds = slice_bounds(n, parts)
            assert [i for a, b in bounds for i in range(a, b)] == list(range(n))
            sizes = [b - a for a, b in bounds]
            assert not sizes or max(sizes) - min(sizes) <= 1


def test_one_engine_refuses_data_parallel():
    with pytest.raises(ConfigurationError, match="--dp N"):
        engine_kwargs(VLLMConfig(data_parallel_size=2), "m", 1024, cpu=True)
    kwargs = engine_kwargs(VLLMConfig(tensor_parallel_size=2), "m", 1024, cpu=True)
    assert kwargs["tensor_parallel_size"] == 2 and "data_parallel_size" not in kwargs


def test_replicas_widen_the_window_but_not_the_fingerprint(tiny_model_path):
    from vllm_extract.run.plan import plan_for_local_model
    from vllm_extract.run.runner import _with_replica_windows

    plan = plan_for_local_model(Settings(VLLMConfig(model=str(tiny_model_path)), ExtractionConfig(window_chunks=8)))
    wide = _with_replica_windows(plan, 3)
    assert wide.extraction.window_chunks == 24 and wide.fingerprint == plan.fingerprint
    assert _with_replica_windows(plan, 1) is plan


def test_ray_options_are_validated():
    for bad in ({"replicas": 0}, {"gpus_per_replica": -1}, {"cpus_per_replica": -0.5}, {"max_task_retries": -1}):
        with pytest.raises(ConfigurationError):
            RayOptions(**bad)  # type: ignore[arg-type]


def _cli(tmp_path: Path, *flags: str) -> Any:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "Alice met Bob."}\n')
    return runner.invoke(app, ["run", str(src), "--out", str(tmp_path / "out.jsonl"), "--model", "tiny", *flags])


def test_engine_ray_without_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = _cli(tmp_path, "--engine", "ray")
    assert result.exit_code == 2, result.output
    assert "pip install 'vllm-extract[ray]'" in result.output
    result = _cli(tmp_path, "--dp", "2", "--overwrite")  # --dp 2 needs Ray replicas too
    assert result.exit_code == 2 and "vllm-extract[ray]" in result.output


def test_ray_option_conflicts_exit_2(tmp_path):
    pytest.importorskip("ray")
    for flags, expected in (
        (["--replicas", "2"], "only apply to --engine ray"),
        (["--engine", "ray", "--dp", "2", "--replicas", "3"], "disagree"),
        (["--engine", "ray", "--backend", "http"], "contradicts"),
        (["--engine", "spark"], "unknown engine"),
        (["--dp", "0"], "data_parallel_size must be at least 1"),
    ):
        result = _cli(tmp_path, "--overwrite", *flags)
        assert result.exit_code == 2, (flags, result.output)
        assert expected in result.output, (flags, result.output)


# --- slow: a real local Ray cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


def ray_settings(model: Path, **extraction: Any) -> Settings:
    """The direct tests' engine settings with 32 completion tokens; grounded decoding (the default)."""
    return Settings(engine_config(model, max_completion_tokens=MAX_TOKENS), ExtractionConfig(**extraction))


def connected(model: Path, replicas: int) -> RayVLLMClient:
    client = RayVLLMClient(
        engine_config(model, max_completion_tokens=MAX_TOKENS),
        model=str(model),
        options=RayOptions(replicas=replicas),
        resolve=resolve_model,
    )
    asyncio.run(client.connect())
    return client


def run(inputs: list[str], out: Path, settings: Settings, client: Any, **options: Any) -> Any:
    return asyncio.run(run_job(inputs, out, settings, RunOptions(overwrite=True, **options), client=client))


def records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def pool(ray_cluster: Any, tiny_model_path: Path) -> Iterator[RayVLLMClient]:
    """Two replicas (one CPU each: the whole cluster). The first tests use both; later ones drop
    one (as a replica that cannot come back is dropped) and go on with one: one load less."""
    client = connected(tiny_model_path, 2)
    try:
        yield client
    finally:
        asyncio.run(client.close())


@pytest.fixture
def replica(pool: RayVLLMClient) -> RayVLLMClient:
    """The pool down to one replica: each window is then one native batch, as in a local run."""
    for actor in pool._actors[1:]:
        pool._drop(actor, RuntimeError("the test needs one replica"))
    return pool


def window(client: RayVLLMClient, model: Path) -> list[VLLMRequest]:
    """The requests of one window over examples/documents.jsonl, as the pipeline builds them."""
    pipeline = ExtractionPipeline(client, plan_for_client(ray_settings(model), client))
    docs = [d for d in iter_documents([str(ROOT / "examples" / "documents.jsonl")]) if isinstance(d, Document)]
    return [pipeline._request(p, MAX_TOKENS) for d in docs for p in pipeline.prepare(d)]


def generating(client: RayVLLMClient, actor: Any, timeout: float = 60) -> None:
    """Wait until ``actor`` is inside a native batch."""
    deadline = time.monotonic() + timeout
    while client._ray.get(actor.status.remote())["generating"] == 0:
        assert time.monotonic() < deadline, "the replica never started generating"
        time.sleep(0.05)


def in_thread(client: RayVLLMClient, requests: list[VLLMRequest]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(asyncio.run(client.generate_batch(requests))))
    worker.start()
    return worker, result


@pytest.mark.slow
def test_two_replicas_split_each_window(pool, direct_client, tiny_model_path, tmp_path):
    """Data parallel on this machine: two replicas (one CPU each) on 2 cores. Each gets a contiguous
    half of the window as one native batch; the responses are those of a local engine given the
    same two batches, and the run's output is one file in input order."""
    assert pool.replicas == 2
    requests = window(pool, tiny_model_path)
    assert len(requests) >= 4
    split = asyncio.run(pool.generate_batch(requests))
    halves = [asyncio.run(direct_client.generate_batch(requests[a:b])) for a, b in slice_bounds(len(requests), 2)]
    assert [r.content for r in split] == [r.content for half in halves for r in half]
    assert all(r.success for r in split)
    # Two replica processes (a replica Ray restarted, e.g. killed under memory pressure, starts
    # its counters again, so which one did what is in the answers above, not in its status).
    assert len({pool._ray.get(a.status.remote())["pid"] for a in pool._actors}) == 2

    out = tmp_path / "dp.jsonl"
    result = run([str(ROOT / "examples" / "documents.jsonl")], out, ray_settings(tiny_model_path), pool)
    got = records(out)
    assert [r["index"] for r in got] == [0, 1, 2, 3] and all(r["status"] == "ok" for r in got)
    assert result.exit_code == 0 and result.stats["ray"]["replicas"] == 2


@pytest.mark.slow
def test_a_replica_that_does_not_come_back_is_dropped_and_its_slice_rerun(pool, direct_client, tiny_model_path):
    assert pool.replicas == 2, "runs after the two-replica test, before the one-replica ones"
    requests = window(pool, tiny_model_path)
    worker, result = in_thread(pool, requests)
    doomed = pool._actors[1]
    generating(pool, doomed)
    pool._ray.kill(doomed, no_restart=True)  # gone for good: Ray does not restart it
    worker.join(timeout=300)
    assert not worker.is_alive()
    (answers,) = result
    assert [a.request_id for a in answers] == [r.request_id for r in requests]
    assert all(a.success for a in answers), [a.error for a in answers if not a.success]
    # Its half went, as the same one batch, to the replica left: the same answers as before.
    halves = [asyncio.run(direct_client.generate_batch(requests[a:b])) for a, b in slice_bounds(len(requests), 2)]
    assert [a.content for a in answers] == [r.content for half in halves for r in half]
    stats = pool.get_stats()["ray"]
    assert stats["replicas"] == 1 and stats["replicas_lost"] == 1 and stats["replicas_requested"] == 2


@pytest.mark.slow
def test_same_records_as_the_direct_run(replica, direct_client, tiny_model_path, tmp_path):
    inputs = [str(ROOT / "examples" / "documents.jsonl")]
    settings = ray_settings(tiny_model_path)
    on_ray = run(inputs, tmp_path / "ray.jsonl", settings, replica)
    local = run(inputs, tmp_path / "direct.jsonl", settings, direct_client)
    ours, theirs = records(tmp_path / "ray.jsonl"), records(tmp_path / "direct.jsonl")
    assert on_ray.report["plan"]["fingerprint"] == local.report["plan"]["fingerprint"]
    assert [r["id"] for r in ours] == [r["id"] for r in theirs]
    # One replica gets each window as the one native batch a local run sends, so vLLM sees the
    # same batches: the records are identical, entities, offsets and token counts included.
    assert ours == theirs
    assert sum(len(r["entities"]) for r in ours) > 0
    assert on_ray.exit_code == local.exit_code == 0


@pytest.mark.slow
def test_error_isolation_input_order_and_report(replica, tiny_model_path, tmp_path):
    good = (ROOT / "examples" / "documents.jsonl").read_bytes().splitlines()
    src = tmp_path / "mixed.jsonl"
    lines = [good[2], b'{"id": "broken", "text": ', good[3], orjson.dumps({"id": "blank", "text": ""}), good[1]]
    src.write_bytes(b"\n".join(lines) + b"\n")
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    result = run([str(src)], out, ray_settings(tiny_model_path), replica, report_path=report)
    got = records(out)
    assert [r["index"] for r in got] == [0, 1, 2, 3, 4]
    assert [r["id"] for r in got] == ["news-item", f"{src}:2", "notice-accents", "blank", "supply-agreement"]
    assert [r["status"] for r in got] == ["ok", "error", "ok", "error", "ok"]
    assert got[1]["error"]["kind"] == "malformed_json" and got[3]["error"]["kind"] == "empty_text"
    assert result.exit_code == 1
    data = orjson.loads(report.read_bytes())
    assert data["engine"] == "ray" and data["backend"] == "direct"
    assert data["summary"]["ok"] == 3 and data["summary"]["errors"] == 2
    assert data["client_stats"]["ray"]["replicas"] == 1 and data["client_stats"]["ray"]["slices_failed"] == 0


@pytest.mark.slow
def test_a_failing_request_fails_alone(replica, tiny_model_path):
    requests = window(replica, tiny_model_path)
    first, last = requests[0], requests[-1]
    too_long = dataclasses.replace(first, request_id="too-long", prompt_token_ids=[1] * (replica.max_model_len + 1))
    bad_grammar = dataclasses.replace(first, request_id="bad-grammar", grammar="start: (((")
    answers = asyncio.run(replica.generate_batch([first, too_long, bad_grammar, last]))
    assert [a.request_id for a in answers] == [first.request_id, "too-long", "bad-grammar", last.request_id]
    assert answers[0].success and answers[-1].success
    assert answers[1].error_kind == "context_overflow"
    assert not answers[2].success and answers[2].error_kind == "engine_error"


@pytest.mark.slow
def test_a_replica_killed_mid_batch_is_restarted_and_its_requests_retried(replica, tiny_model_path):
    ray, actor = replica._ray, replica._actors[0]
    before = ray.get(actor.ready.remote())["pid"]
    requests = window(replica, tiny_model_path)
    worker, result = in_thread(replica, requests)
    generating(replica, actor)
    os.kill(before, signal.SIGKILL)  # the replica process this test started, mid-batch
    worker.join(timeout=300)
    assert not worker.is_alive()
    (answers,) = result
    assert [a.request_id for a in answers] == [r.request_id for r in requests]
    assert all(a.success for a in answers), [a.error for a in answers if not a.success]
    assert ray.get(actor.ready.remote())["pid"] != before  # Ray restarted it: a new process loaded the model
    stats = replica.get_stats()["ray"]
    assert stats["replicas"] == 1 and stats["slices_failed"] == 0
