"""A whole job: open the output, start a client, run the pipeline, write the report.

This is what ``vllm-extract run`` calls (``dry_run`` is ``vllm-extract plan``); it works without
Typer or rich. The plan comes from ``plan``, the report's content from ``report``, a shard's
manifest from ``shards``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from ..clients.base import VLLMClientInterface, VLLMClientType
from ..clients.factory import BACKENDS, VLLMClientFactory, open_client
from ..config import Settings
from ..events import EnginePhase, MemorySample, Subscriber
from ..exceptions import BudgetError, ConfigurationError, OutputError
from ..output import OutputWriter, ResumeGuard, ReuseIndex
from ..output.files import lock_path, manifest_path, run_settings_path
from ..output.records import text_sha256
from ..output.report import write_metrics, write_report
from ..output.resume import check_resume
from ..output.shards import ShardOutputWriter, ShardSpec, remove_manifest, write_manifest
from ..readers import BadInput, Document, InputItem, count_documents
from .machine import choose_engine
from .paths import check_written_paths
from .pipeline import ExtractionPipeline
from .plan import (
    ResolvedModel,
    RunPlan,
    batching_parts,
    fingerprint_parts,
    plan_for_client,
    plan_for_local_model,
    read_inputs,
    resolve_model,
)
from .report import build_report
from .shards import ShardFilter, shard_manifest
from .summary import RunSummary

__all__ = ["RunOptions", "RunOutcome", "RunResult", "check_run_paths", "open_run", "run_job"]

logger = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """How a job runs (besides Settings): backend, output handling, reports, hooks.

    ``engine_log`` is where the CLI sent the engine's own output (named in the report).
    ``reuse``: earlier outputs whose records are copied when id, text hash and fingerprint match.
    ``texts_dir``: converted documents' texts are stored there (``<text_sha256>.txt``) and records
    carry ``text_path`` instead of ``text``.
    ``engine``: ``vllm`` (the in-process engine; ``data_parallel_size`` > 1 runs that many replicas
    on a private local Ray instance) or ``ray`` (replicas on the Ray cluster at ``ray_address``, a
    private local instance when None). ``replicas`` (default ``data_parallel_size``) and
    ``gpus_per_replica`` (default ``tensor_parallel_size`` when the cluster has GPUs, else 0) shape
    them. ``shard``: ``(I, N)`` keeps only the documents of shard I of N (``output.shards``): the
    output holds their records with their global ``index`` and a finished run writes
    ``OUT.shard.json`` for ``vllm-extract merge``.
    """

    engine: str = "vllm"
    ray_address: str | None = None
    replicas: int | None = None
    gpus_per_replica: float | None = None
    shard: tuple[int, int] | None = None
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


class RunOutcome(StrEnum):
    """How a run that returned ended. The CLI maps each to its exit code (``cli/exit_codes.py``)."""

    OK = "ok"  # every record in the output is ok
    DOCUMENT_ERRORS = "document_errors"  # the output holds error records (kept ones of a resume too)
    STOPPED = "stopped"  # the engine restart bound was spent: ``summary.stopped`` says why; --resume


@dataclass
class RunResult:
    """What ``run_job`` returns: the summary, the client's counters, the outcome and the report
    (also written to ``report_path``)."""

    summary: RunSummary
    stats: dict[str, Any]
    outcome: RunOutcome
    report: dict[str, Any]


async def open_run(
    settings: Settings, options: RunOptions, *, on_plan: Callable[[RunPlan], None] | None = None
) -> tuple[RunPlan, VLLMClientInterface]:
    """Resolve the model, build the plan, run the GPU pre-flight, then connect a client.

    ``on_plan`` is called with the plan as soon as it exists: for a local model before the engine
    loads (a resume that would mix runs is refused there), for a server once it answered.
    ``auto`` tries the in-process engine and falls back to the configured servers (logging why)
    when the model cannot be resolved or loaded, vLLM is missing, or the pre-flight fails: the
    factory's one rule (``clients.factory.open_client``); Ray replicas are opened by the factory
    too (``create_ray_client``). Raises
    what the chosen path raises (``ConfigurationError``, ``GPUMemoryError``,
    ``ModelNotLoadedError``, ``ConnectionError``) and what ``on_plan`` raises.
    """
    notify = on_plan or (lambda plan: None)
    if options.backend not in BACKENDS:
        raise ConfigurationError(f"unknown backend {options.backend!r}", hint=f"use one of: {', '.join(BACKENDS)}")
    if _uses_ray(settings, options):
        return await _open_ray_run(settings, options, notify)
    planned: list[tuple[RunPlan | None, ResolvedModel]] = []

    async def open_direct() -> VLLMClientInterface:
        model = resolve_model(settings.vllm.model)
        _announce_loading(options, model.name)  # the plan reads the model's tokenizer and config: part of loading
        plan = plan_for_local_model(settings, model) if model.local else None
        planned.append((plan, model))
        if plan is not None:
            notify(plan)
        if not options.skip_gpu_check:
            from ..clients.engine_build import platform_is_cpu
            from ..engine.gpu.preflight import preflight

            preflight(
                (plan.settings if plan else settings).vllm, cpu=platform_is_cpu(), wait_seconds=options.wait_for_gpu
            )
        context = plan.max_model_len if plan else settings.vllm.max_model_len
        config = plan.vllm if plan else choose_engine(settings.vllm, None).apply(settings.vllm)
        return await VLLMClientFactory.create_direct_client(config, model_path=model.path, max_model_len=context)

    # The one fallback rule is the factory's; budgets that fit no server either and a refused
    # resume are no fallback case.
    client = await open_client(
        options.backend, settings.vllm, direct=open_direct, no_fallback=(BudgetError, OutputError)
    )
    try:
        local_plan, model = planned[-1] if client.client_type is not VLLMClientType.HTTP_API else (None, None)
        if local_plan is not None:
            return local_plan, client
        plan = plan_for_client(settings, client, model)  # a server, or a hub model vLLM downloaded
        notify(plan)
    except BaseException:
        await client.close()
        raise
    return plan, client


ENGINES = ("vllm", "ray")


def _announce_loading(options: RunOptions, model: str) -> None:
    """Tell the subscribers the engine is about to load ``model`` (``EnginePhase("loading")``): the
    panel and the plain lines say so from the start, not only once the first answer is in."""
    event = EnginePhase("loading", detail=model)
    for subscriber in options.subscribers:
        try:
            subscriber(event)
        except Exception:
            logger.exception("event subscriber failed")


def _uses_ray(settings: Settings, options: RunOptions) -> bool:
    """True for ``--engine ray`` and for ``--dp N > 1`` (one engine cannot do data parallel);
    raises ``ConfigurationError`` for an unknown engine or Ray-only options without Ray."""
    if options.engine not in ENGINES:
        raise ConfigurationError(f"unknown engine {options.engine!r}", hint=f"use one of: {', '.join(ENGINES)}")
    if options.engine == "ray" or settings.vllm.data_parallel_size > 1:
        return True
    given = [
        flag
        for flag, value in (
            ("--ray-address", options.ray_address),
            ("--replicas", options.replicas),
            ("--gpus-per-replica", options.gpus_per_replica),
        )
        if value is not None
    ]
    if given:
        raise ConfigurationError(f"{', '.join(given)} only apply to --engine ray", hint="add --engine ray")
    return False


async def _open_ray_run(
    settings: Settings, options: RunOptions, notify: Callable[[RunPlan], None]
) -> tuple[RunPlan, VLLMClientInterface]:
    """``open_run`` for engine replicas on Ray: plan on this machine (the driver tokenizes and
    grounds), pre-flight this machine's GPUs when the cluster is a private local one, then start
    the replicas. Raises ``ConfigurationError`` (Ray missing: exit 2; conflicting options) and
    what ``RayVLLMClient.connect`` raises."""
    import math

    from ..clients.ray import RayOptions, import_ray

    import_ray()  # fail before planning when the extra is missing
    if options.backend == "http":
        raise ConfigurationError("--backend http contradicts --engine ray / --dp", hint="drop one of them")
    dp = settings.vllm.data_parallel_size
    if options.replicas is not None and dp > 1 and options.replicas != dp:
        raise ConfigurationError(
            f"--replicas {options.replicas} and --dp {dp} disagree: both set the number of engine replicas",
            hint="give one of them",
        )
    replicas = options.replicas or dp
    ray_options = RayOptions(address=options.ray_address, replicas=replicas, gpus_per_replica=options.gpus_per_replica)
    settings = Settings(dataclasses.replace(settings.vllm, data_parallel_size=replicas), settings.extraction)
    model = resolve_model(settings.vllm.model, required=False)
    _announce_loading(options, settings.vllm.model)
    plan = plan_for_local_model(settings, model) if model.local else None
    if plan is not None:
        notify(plan)
    config = plan.vllm if plan else choose_engine(settings.vllm, None).apply(settings.vllm)
    if not options.skip_gpu_check and options.ray_address is None:
        from ..clients.engine_build import platform_is_cpu
        from ..engine.gpu.preflight import preflight

        checked = config
        if options.gpus_per_replica is not None:  # e.g. 0.5: two replicas share a GPU
            gpus = max(1, math.ceil(replicas * options.gpus_per_replica))
            checked = dataclasses.replace(config, tensor_parallel_size=1, data_parallel_size=gpus)
        preflight(checked, cpu=platform_is_cpu(), wait_seconds=options.wait_for_gpu)
    context = plan.max_model_len if plan else settings.vllm.max_model_len
    client = await VLLMClientFactory.create_ray_client(
        config, model=settings.vllm.model, max_model_len=context, options=ray_options, resolve=resolve_model
    )
    try:
        if plan is None:  # the driver has no model files: the replicas' tokenizer counts
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
    check_run_paths(inputs, out, settings, options)
    started = time.time()
    shard = ShardSpec(*options.shard) if options.shard is not None else None
    # Open the output (lock, resume scan) before loading any model: fail fast.
    with _open_output(out, options, shard) as writer:
        items: Iterable[InputItem] = read_inputs(inputs, settings, options.stdin)
        total = count_documents(inputs, globs=settings.extraction.globs) if "-" not in inputs else None
        sharded: ShardFilter | None = None
        if shard is not None:
            remove_manifest(out)  # stale until this shard run finishes
            items = sharded = ShardFilter(items, shard)
            total = None  # how many documents hash to this shard is known only at the end
        checked: dict[str, Any] = {}

        def check(plan: RunPlan) -> None:
            # Before anything is generated (before the engine loads, for a local model): refuse a
            # resume that would mix runs, open the reuse sources, save the settings in force.
            parts = fingerprint_parts(plan) | batching_parts(plan)
            checked["guard"] = ResumeGuard(
                writer.done, plan.fingerprint, settings=parts, previous_settings=writer.previous_settings, out=out
            )
            if writer.done and "-" not in inputs:
                # The inputs are read once more up front, so a changed input is refused before the
                # engine loads (standard input cannot be read twice: it is checked while streaming).
                scan: Iterable[InputItem] = read_inputs(inputs, settings)
                if shard is not None:
                    scan = ShardFilter(scan, shard)
                check_resume(
                    writer.done,
                    plan.fingerprint,
                    _identities(scan),
                    settings=parts,
                    previous_settings=writer.previous_settings,
                    out=out,
                )
            reuse = (
                ReuseIndex.load(options.reuse, fingerprint=plan.fingerprint, out=out, settings=parts)
                if options.reuse
                else None
            )
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
                _make_texts_dir(options.texts_dir)
            ext = plan.extraction
            pipeline = ExtractionPipeline(
                active,
                plan,
                subscribers=options.subscribers,
                stop_event=options.stop_event,
                texts_dir=options.texts_dir,
                queue_requests=ext.queue_requests or None,
                reorder_window=ext.reorder_window,
                deterministic=int(getattr(active, "replicas", 1)) == 1,
            )
            summary = await pipeline.run(
                items, writer.write, tick=writer.sync_if_due, resume=guard, reuse=reuse, documents_total=total
            )
        finally:
            if sampler is not None:
                sampler.stop()
                active.stats.add("gpu_memory_alerts", sampler.alerts)
            stats = active.get_stats()
            if own_client:
                await active.close()
        manifest = None
        if sharded is not None and sharded.exhausted and not summary.interrupted and summary.stopped is None:
            manifest = write_manifest(out, shard_manifest(sharded, plan, settings, inputs))
    # Every error record in the file counts, the kept ones of a resumed run too.
    if summary.stopped is not None:
        outcome = RunOutcome.STOPPED
    else:
        outcome = RunOutcome.DOCUMENT_ERRORS if writer.errors_in_file else RunOutcome.OK
    report = build_report(
        summary, stats, plan, inputs, out, started, active, resumed=options.resume, engine_log=options.engine_log
    )
    report["engine"] = "ray" if active.client_type is VLLMClientType.RAY else "vllm"
    if sharded is not None:
        report["shard"] = sharded.shard.as_dict() | {
            "inputs_total": sharded.total if sharded.exhausted else None,
            "manifest": str(manifest) if manifest else None,
        }
    if options.report_path:
        write_report(options.report_path, report)
    if options.metrics_path:
        write_metrics(options.metrics_path, report)
    return RunResult(summary, stats, outcome, report)


def _make_texts_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the --texts folder {path}: {exc.strerror or exc}") from None


def check_run_paths(inputs: Sequence[str], out: Path, settings: Settings, options: RunOptions) -> None:
    """Refuse, before anything is read or loaded, output paths that cannot be written or would
    destroy an input: ``--out`` and the files beside it, ``--errors``, ``--report``,
    ``--metrics-file``, ``--texts`` (see ``paths``). Raises ``OutputError``."""
    beside = {
        "the lock beside --out": lock_path(out),
        "the settings beside --out": run_settings_path(out),
        "the engine log beside --out": options.engine_log,
        "the shard manifest beside --out": manifest_path(out) if options.shard is not None else None,
    }
    check_written_paths(
        {
            "--out": out,
            "--errors": options.errors_path,
            "--report": options.report_path,
            "--metrics-file": options.metrics_path,
            **beside,
        },
        inputs=inputs,
        globs=settings.extraction.globs,
        read={f"--reuse {path}": path for path in options.reuse},
        texts_dir=options.texts_dir,
    )


def _open_output(out: Path, options: RunOptions, shard: ShardSpec | None) -> OutputWriter:
    """The output writer: a shard's keeps global indices (``ShardOutputWriter``)."""
    kwargs: dict[str, Any] = {
        "resume": options.resume,
        "overwrite": options.overwrite,
        "errors_path": options.errors_path,
    }
    return ShardOutputWriter(out, shard, **kwargs) if shard is not None else OutputWriter(out, **kwargs)


def _identities(items: Iterable[InputItem]) -> Iterator[tuple[int, str, str | None, str | None]]:
    """(index, id, text_sha256, line_sha256) of each input item, documents and bad inputs, in order."""
    for item in items:
        if isinstance(item, Document):
            yield item.index, item.id, text_sha256(item.text), None
        elif isinstance(item, BadInput):
            yield item.index, item.id, None, item.line_sha256


def _start_sampler(client: VLLMClientInterface, settings: Settings, options: RunOptions) -> Any:
    """Sample memory off the hot path: GPUs in use, or host RAM on the CPU backend."""
    if not settings.vllm.enable_gpu_monitoring or (not options.subscribers and options.report_path is None):
        return None
    from ..engine.gpu.sampler import MemorySampler, memory_reader

    cpu = bool(getattr(client, "cpu", True))
    used = settings.vllm.tensor_parallel_size * settings.vllm.data_parallel_size  # every replica's GPUs
    gpu_ids = list(range(settings.vllm.gpu_id, settings.vllm.gpu_id + used))

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
