"""The Ray backend (``run --engine ray``, ``--dp N``) on a real local Ray cluster started here.

The slow tests start one Ray instance on 127.0.0.1 (``ray.init(num_cpus=2)``) and two replicas of
the tiny model (one CPU each): data parallel on 2 cores (each replica pulls documents as it frees
up), then a replica lost for good (its documents go to the other), then, on the one left, the
comparison with the local direct run, error isolation, input order, the report and a replica
killed mid-run (Ray restarts it; its unanswered requests are sent again).
They run in file order and share the replicas (one model load less). The fast tests check what
needs no cluster: option errors, the missing extra.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import engine_config
from typer.testing import CliRunner

from vllm_extract.cli import app
from vllm_extract.clients.base import VLLMRequest
from vllm_extract.clients.engine_build import engine_kwargs
from vllm_extract.clients.ray import RayOptions, RayVLLMClient
from vllm_extract.config import ExtractionConfig, Settings, VLLMConfig
from vllm_extract.events import ChunkDone
from vllm_extract.exceptions import ConfigurationError
from vllm_extract.readers import Document, iter_documents
from vllm_extract.run.pipeline import ExtractionPipeline
from vllm_extract.run.plan import plan_for_client, resolve_model
from vllm_extract.run.runner import RunOptions, run_job

ROOT = Path(__file__).resolve().parent.parent
MAX_TOKENS = 32
runner = CliRunner()


# --- fast: no cluster ---------------------------------------------------------------------------


def test_one_engine_refuses_data_parallel():
    with pytest.raises(ConfigurationError, match="--dp N"):
        engine_kwargs(VLLMConfig(data_parallel_size=2), "m", 1024, cpu=True)
    kwargs = engine_kwargs(VLLMConfig(tensor_parallel_size=2), "m", 1024, cpu=True)
    assert kwargs["tensor_parallel_size"] == 2 and "data_parallel_size" not in kwargs


def test_ray_options_are_validated():
    for bad in ({"replicas": 0}, {"gpus_per_replica": -1}, {"cpus_per_replica": -0.5}, {"pull_requests": -1}):
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
    """The pool down to one replica: it is fed the whole stream in input order, as a local engine."""
    for actor in pool._actors[1:]:
        pool._drop(actor, RuntimeError("the test needs one replica"))
    return pool


def window(client: RayVLLMClient, model: Path) -> list[VLLMRequest]:
    """The requests of examples/documents.jsonl, as the pipeline builds them."""
    pipeline = ExtractionPipeline(client, plan_for_client(ray_settings(model), client))
    docs = [d for d in iter_documents([str(ROOT / "examples" / "documents.jsonl")]) if isinstance(d, Document)]
    return [pipeline._request(p) for d in docs for p in pipeline.prepare(d)]


def corpus(tmp_path: Path, n: int = 12) -> list[str]:
    src = tmp_path / "corpus.jsonl"
    docs = [{"id": f"d{i}", "text": f"Memo {i}. Acme {i} Ltd. paid Jane Roe{i} ${i},000 in Boston."} for i in range(n)]
    src.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    return [str(src)]


def after_first_chunk(action: Any) -> Any:
    done: list[bool] = []

    def subscriber(event: Any) -> None:
        if isinstance(event, ChunkDone) and not done:
            done.append(True)
            action()

    return subscriber


@pytest.mark.slow
def test_two_replicas_pull_documents_as_they_free_up(pool, tiny_model_path, tmp_path):
    """Data parallel on this machine: two replicas (one CPU each) on 2 cores. Each pulls documents
    as it frees up (no window barrier); the output is one file in input order."""
    assert pool.replicas == 2
    out = tmp_path / "dp.jsonl"
    result = run(corpus(tmp_path), out, ray_settings(tiny_model_path), pool)
    got = records(out)
    assert [r["index"] for r in got] == list(range(12)) and all(r["status"] == "ok" for r in got)
    assert result.outcome == "ok" and result.stats["ray"]["replicas"] == 2
    engine = result.summary.engine
    assert engine["replicas"] == 2  # both replicas answered and measured their steps
    assert engine["steps"] > 0 and engine["occupancy"] is not None


@pytest.mark.slow
def test_a_replica_that_does_not_come_back_is_dropped_and_its_documents_rerun(pool, tiny_model_path, tmp_path):
    assert pool.replicas == 2, "runs after the two-replica test, before the one-replica ones"
    doomed = pool._actors[1]
    subscriber = after_first_chunk(lambda: pool._ray.kill(doomed, no_restart=True))  # gone for good
    out = tmp_path / "out.jsonl"
    result = run(corpus(tmp_path), out, ray_settings(tiny_model_path), pool, subscribers=[subscriber])
    got = records(out)
    assert [r["index"] for r in got] == list(range(12))
    assert all(r["status"] == "ok" for r in got), [r.get("error") for r in got]
    stats = pool.get_stats()["ray"]
    assert stats["replicas"] == 1 and stats["replicas_lost"] == 1 and stats["replicas_requested"] == 2
    assert result.summary.engine_restarts == 1  # the lost replica's death counts against the bound


@pytest.mark.slow
def test_same_records_as_the_direct_run(replica, direct_client, tiny_model_path, tmp_path):
    inputs = [str(ROOT / "examples" / "documents.jsonl")]
    settings = ray_settings(tiny_model_path)
    on_ray = run(inputs, tmp_path / "ray.jsonl", settings, replica)
    local = run(inputs, tmp_path / "direct.jsonl", settings, direct_client)
    ours, theirs = records(tmp_path / "ray.jsonl"), records(tmp_path / "direct.jsonl")
    assert on_ray.report["plan"]["fingerprint"] == local.report["plan"]["fingerprint"]
    assert [r["id"] for r in ours] == [r["id"] for r in theirs]
    # One replica runs the same deterministic engine loop as a local engine process and is fed the
    # same stream, so vLLM sees the same steps: identical records, offsets and token counts included.
    assert ours == theirs
    assert sum(len(r["entities"]) for r in ours) > 0
    assert on_ray.outcome == local.outcome == "ok"


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
    assert result.outcome == "document_errors"
    data = orjson.loads(report.read_bytes())
    assert data["engine"] == "ray" and data["backend"] == "ray"
    assert data["summary"]["ok"] == 3 and data["summary"]["errors"] == 2
    assert data["client_stats"]["ray"]["replicas"] == 1


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
def test_a_replica_killed_mid_run_is_restarted_and_its_requests_sent_again(replica, tiny_model_path, tmp_path):
    ray, actor = replica._ray, replica._actors[0]
    before = ray.get(actor.ready.remote())["pid"]
    subscriber = after_first_chunk(lambda: os.kill(before, signal.SIGKILL))  # the replica process, mid-run
    out = tmp_path / "out.jsonl"
    # One document at a time (reorder_window 1), so the first answer comes while 11 documents remain.
    settings = ray_settings(tiny_model_path, reorder_window=1)
    result = run(corpus(tmp_path), out, settings, replica, subscribers=[subscriber])
    got = records(out)
    assert [r["index"] for r in got] == list(range(12))
    assert all(r["status"] == "ok" for r in got), [r.get("error") for r in got]
    assert ray.get(actor.ready.remote())["pid"] != before  # Ray restarted it: a new process loaded the model
    assert result.summary.engine_restarts == 1
    assert result.summary.engine["engine_pids"][0] == before
