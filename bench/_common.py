"""Shared pieces of the benchmarks: settings, the exact prompts of a run, raw `LLM.chat` runs and
`run_job` runs, reading outputs back. Nothing here starts an engine by itself.

The raw side (row 1, also alone: `bench/run_all.py --rows 1`) sends the prompts
`ExtractionPipeline.prepare` builds, and the sampling parameters are the ones the extraction sends
(temperature 0, seed 42, the same per-prompt `max_tokens`, the same constraint: the grounded
grammar of each chunk, or the JSON schema in schema mode).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from vllm_extract import (  # the environment above is set first
    Document,
    ExtractionConfig,
    ExtractionPipeline,
    RunOptions,
    RunResult,
    Settings,
    VLLMClientInterface,
    VLLMConfig,
    iter_documents,
    run_job,
)
from vllm_extract.run.pipeline import PreparedChunk
from vllm_extract.run.plan import RunPlan

KV_CACHE_BYTES = 2 << 30


def make_settings(
    max_tokens: int,
    chunk_tokens: int,
    *,
    base_url: str | None = None,
    concurrency: int = 16,
    kv_cache_bytes: int = KV_CACHE_BYTES,
) -> Settings:
    """The benchmark settings: tiny model, retries off (both sides of a comparison do the same work)."""
    config = VLLMConfig(
        model="tiny",
        max_completion_tokens=max_tokens,
        kv_cache_memory_bytes=kv_cache_bytes,
        base_url=base_url,
        concurrency=concurrency,
    )
    return Settings(config, ExtractionConfig(chunk_tokens=chunk_tokens, retry_truncated=False))


def load_documents(corpus: Path) -> list[Document]:
    return [d for d in iter_documents([str(corpus)]) if isinstance(d, Document)]


def prepare_all(pipeline: ExtractionPipeline, docs: Sequence[Document]) -> list[PreparedChunk]:
    """Every chunk's exact prompt, in run order."""
    return [p for d in docs for p in pipeline.prepare(d)]


@dataclass
class RawInputs:
    """What raw `LLM.chat` gets: the extraction's conversations and sampling parameters."""

    conversations: list[list[dict[str, str]]]
    params: list[Any]
    prompt_tokens: int


def raw_inputs(plan: RunPlan, prepared: Sequence[PreparedChunk]) -> RawInputs:
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    from vllm_extract.extract.grammar import build_grounded_grammar

    def constraint(p: PreparedChunk) -> Any:
        if plan.decoding == "grounded":
            return StructuredOutputsParams(grammar=build_grounded_grammar(p.chunk.text, plan.extraction))
        return StructuredOutputsParams(json=plan.schema, disable_any_whitespace=True)

    params = [
        SamplingParams(temperature=0.0, seed=42, max_tokens=p.max_tokens, structured_outputs=constraint(p))
        for p in prepared
    ]
    return RawInputs([p.messages for p in prepared], params, sum(len(p.prompt_ids) for p in prepared))


def run_raw(llm: Any, inputs: RawInputs) -> tuple[float, int]:
    """One raw `LLM.chat` pass from an empty prefix cache: (seconds, generated tokens)."""
    llm.reset_prefix_cache()
    started = time.perf_counter()
    outputs = llm.chat(inputs.conversations, inputs.params, use_tqdm=False)
    seconds = time.perf_counter() - started
    return seconds, sum(len(o.outputs[0].token_ids) for o in outputs)


def run_ours(
    corpus: Path,
    out: Path,
    settings: Settings,
    client: VLLMClientInterface,
    options: RunOptions | None = None,
) -> tuple[float, RunResult]:
    """One `run_job` over the corpus with a connected client: (wall seconds, result).

    A direct client's prefix cache is emptied first, so every pass does the same prefill work.
    """
    reset_cache(client)
    started = time.perf_counter()
    result = asyncio.run(run_job([str(corpus)], out, settings, options or RunOptions(overwrite=True), client=client))
    return time.perf_counter() - started, result


def reset_cache(client: Any) -> None:
    """Empty an engine client's prefix cache (direct and Ray clients have one; others: nothing)."""
    reset = getattr(getattr(client, "inner", client), "reset_prefix_cache", None)
    if reset is not None:
        asyncio.run(reset())


def raw_llm(plan: RunPlan) -> Any:
    """A raw ``vllm.LLM`` in this process with the run's engine settings, for row 1's other side.

    Its engine core runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), as in vllm-extract's
    engine process, so the comparison measures vllm-extract's own work, not where vLLM's core runs
    (with vLLM's default multiprocess core the same prompts took 39 s against 19-23 s in-process,
    measured here on 2 cores: that gap is the core's placement, not the pipeline)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from vllm import LLM

    from vllm_extract.clients.engine_build import engine_kwargs

    return LLM(**engine_kwargs(plan.vllm, plan.model.path, plan.max_model_len, cpu=True))


def reset_server_cache(url: str) -> bool:
    """Empty a vLLM server's prefix cache (needs VLLM_SERVER_DEV_MODE=1 on the server)."""
    import httpx

    try:
        return httpx.post(url.rstrip("/") + "/reset_prefix_cache", timeout=60).status_code == 200
    except httpx.HTTPError:
        return False


def run_http(corpus: Path, out: Path, settings: Settings) -> tuple[float, RunResult]:
    """Connect an HTTPVLLMClient, run the job, close it, all in one event loop (its pool is loop-bound).

    The server's prefix cache is emptied first; the time covers the job only, not the connect.
    """
    from vllm_extract import HTTPVLLMClient

    if settings.vllm.base_url:
        reset_server_cache(settings.vllm.base_url)

    async def go() -> tuple[float, RunResult]:
        client = HTTPVLLMClient(settings.vllm)
        await client.connect()
        try:
            started = time.perf_counter()
            result = await run_job([str(corpus)], out, settings, RunOptions(overwrite=True), client=client)
            return time.perf_counter() - started, result
        finally:
            await client.close()

    return asyncio.run(go())


def read_output(out: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]


def exact_span_counts(records: Sequence[dict[str, Any]], texts: dict[str, str]) -> tuple[int, int, int]:
    """(entities written, of them exact spans ``text == doc[start:end]``, ungrounded ones dropped)."""
    total = exact = dropped = 0
    for record in records:
        source = texts.get(record["id"], "")
        dropped += int(record.get("ungrounded", 0))
        for entity in record.get("entities", ()):
            total += 1
            start, end = entity.get("start", -1), entity.get("end", -1)
            exact += int(0 <= start <= end <= len(source) and source[start:end] == entity.get("text"))
    return total, exact, dropped


def entity_fingerprints(out: Path) -> dict[str, bytes]:
    """Per document id, the entity list serialized with sorted keys (byte-comparable)."""
    return {r["id"]: orjson.dumps(r.get("entities", []), option=orjson.OPT_SORT_KEYS) for r in read_output(out)}


Row = dict[str, Any]


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    corpus: Path
    docs: list[Document]
    settings: Settings
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def plan(self) -> RunPlan:
        """The run plan of the benchmark settings (built once; no engine)."""
        if "plan" not in self.shared:
            from vllm_extract.run.plan import plan_for_local_model

            self.shared["plan"] = plan_for_local_model(self.settings)
        plan: RunPlan = self.shared["plan"]
        return plan

    @property
    def text_bytes(self) -> int:
        return sum(len(d.text.encode()) for d in self.docs)

    def corpus_kwargs(self) -> dict[str, int]:
        return corpus_kwargs(self.args)


def corpus_kwargs(args: argparse.Namespace) -> dict[str, int]:
    """bench/corpus.py parameters shared by every corpus of a run."""
    return {"seed": 1234, "long_every": args.long_every, "long_paragraphs": args.long_paragraphs}


def docs_per_second(docs: int, seconds: float) -> float:
    return docs / seconds if seconds > 0 else 0.0
