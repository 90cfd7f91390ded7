"""The Ray backend against the direct backend, same corpus and settings, in one session (a row).

    .venv/bin/python bench/_ray.py                       # examples/docs, 32 tokens, 1 replica
    .venv/bin/python bench/_ray.py --replicas 2          # also two replicas (data parallel)

Both sides run ``run_job`` with a connected client, so engine start-up is timed apart from the job:
first a ``DirectVLLMClient`` (closed after its rounds), then a ``RayVLLMClient`` with one replica on
a private local Ray instance (``ray.init`` inside ``connect``). With one replica the replica gets the
very batches the direct run sends, so both do the same engine work and the ratio prices what Ray
adds: the trip of each window's requests to the replica process and of the responses back, and
Ray's scheduling. On a 2-core machine that is all this row can measure: the replica shares the same
two cores as the driver, there is nothing to gain. Each replica reserves the machine's cores divided
by the replicas, which Ray turns into its torch threads (``OMP_NUM_THREADS``): one replica gets as
many threads as the direct engine. ``--replicas 2`` shows what two engines on the same two cores do
(one thread each; on N GPUs each replica has its own GPU).

The row's result is ``ratio`` = direct job seconds / Ray job seconds (best of ``--rounds``; 1.0:
no overhead), and whether the entities are the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # first: sets HF_HUB_OFFLINE etc. before vLLM loads
from _common import Row

from vllm_extract import DirectVLLMClient, RunOptions, Settings
from vllm_extract.clients.ray import RayOptions, RayVLLMClient
from vllm_extract.run.plan import plan_for_local_model, resolve_model

ROOT = Path(__file__).resolve().parent.parent


def _rounds(
    label: str, corpus: Path, work: Path, settings: Settings, client: Any, rounds: int
) -> tuple[list[float], Path, Any]:
    times: list[float] = []
    out = work / f"{label}.jsonl"
    result = None
    for n in range(rounds):
        out = work / f"{label}-{n}.jsonl"
        if isinstance(client, RayVLLMClient):
            client.reset_prefix_cache()  # run_ours empties a direct engine's: both start cold
        seconds, result = common.run_ours(corpus, out, settings, client, RunOptions(overwrite=True))
        times.append(seconds)
        print(f"  {label} round {n}: {seconds:.2f}s", flush=True)
    return times, out, result


def row_ray_vs_direct(corpus: Path, work: Path, settings: Settings, *, rounds: int = 2, replicas: int = 1) -> Row:
    """Time ``run_job`` over ``corpus`` on the direct engine, then on ``replicas`` Ray replicas.

    Returns a row: ``ratio`` (direct seconds / Ray seconds, best rounds), the per-round seconds,
    the engine start-up seconds of each side, and how many documents got the same entity lists.
    Loads one engine at a time (the direct one is closed before the replicas start).
    """
    plan = plan_for_local_model(settings)
    started = time.perf_counter()
    direct = DirectVLLMClient.from_plan(plan)
    asyncio.run(direct.connect())
    direct_load = time.perf_counter() - started
    try:
        direct_times, direct_out, direct_result = _rounds("direct", corpus, work, settings, direct, rounds)
    finally:
        asyncio.run(direct.close())

    started = time.perf_counter()
    # Ray sets a replica's OMP_NUM_THREADS to its CPUs: give it the cores the direct engine uses
    # (all of them, shared among the replicas), or the ratio measures torch threads, not Ray.
    cpus = max(1, (os.cpu_count() or 1) // replicas)
    options = RayOptions(replicas=replicas, cpus_per_replica=cpus)
    on_ray = RayVLLMClient(
        plan.vllm, model=plan.model.path, max_model_len=plan.max_model_len, options=options, resolve=resolve_model
    )
    asyncio.run(on_ray.connect())
    ray_load = time.perf_counter() - started
    try:
        ray_times, ray_out, ray_result = _rounds(f"ray{replicas}", corpus, work, settings, on_ray, rounds)
    finally:
        asyncio.run(on_ray.close())

    ours, theirs = common.entity_fingerprints(ray_out), common.entity_fingerprints(direct_out)
    same = sum(1 for doc_id, entities in ours.items() if theirs.get(doc_id) == entities)
    ratio = min(direct_times) / min(ray_times)
    docs = direct_result.summary.documents
    return {
        "title": f"`run --engine ray` ({replicas} replica{'s' * (replicas > 1)}, local Ray) vs direct, same corpus",
        "result": f"throughput ratio {ratio:.3f} ({docs / min(ray_times):.2f} vs "
        f"{docs / min(direct_times):.2f} docs/s); same entities in {same}/{len(theirs)} documents",
        "goal": "measures Ray's overhead on 2 cores",
        "met": None,
        "limit": f"engine start: direct {direct_load:.1f}s, Ray {ray_load:.1f}s (Ray start + replica load); "
        f"the Ray job spent {ray_result.summary.generation_seconds:.2f}s waiting on generation, "
        f"the direct job {direct_result.summary.generation_seconds:.2f}s",
        "ratio": ratio,
        "direct_seconds": direct_times,
        "ray_seconds": ray_times,
        "direct_start_seconds": direct_load,
        "ray_start_seconds": ray_load,
        "documents": docs,
        "same_entities": same,
        "replicas": replicas,
        "cpus_per_replica": cpus,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT / "examples" / "docs")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--chunk-tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()
    settings = common.make_settings(args.max_tokens, args.chunk_tokens, kv_cache_bytes=1 << 30)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as work:
        row = row_ray_vs_direct(args.corpus, Path(work), settings, rounds=args.rounds, replicas=args.replicas)
    print(f"{row['title']}: {row['result']}")
    print(row["limit"])
    print({k: v for k, v in row.items() if k not in ("title", "result", "limit")}, flush=True)


if __name__ == "__main__":
    main()
