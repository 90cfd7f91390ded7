"""`vllm-extract run` and `vllm-extract plan`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ..exceptions import VLLMClientError
from ..output.files import engine_log_path
from ..output.shards import parse_shard
from ..run.runner import RunOptions, check_run_paths, run_job
from ._app import (
    EXIT_CODES_HELP,
    ChunkOpt,
    ConfigOpt,
    DecodingOpt,
    DtypeOpt,
    ExamplesOpt,
    GlobOpt,
    IdFieldOpt,
    MaxLenOpt,
    MaxTokensOpt,
    MentionsOpt,
    ModelOpt,
    OverlapOpt,
    PassesOpt,
    SettingsFlags,
    StrategyOpt,
    TextFieldOpt,
    TypeGroupsOpt,
    TypesFileOpt,
    TypesOpt,
    _fail,
    _settings,
    _setup_logging,
    app,
    engine_output_to,
    err,
)
from .display import RunDisplay
from .exit_codes import ExitCode, for_outcome

INPUTS_HELP = (
    "Files (JSONL: a document per line; text, Markdown, PDF, DOCX, HTML: one document each), folders "
    "(read recursively for --glob), or - for JSONL on stdin."
)


@app.command(epilog=EXIT_CODES_HELP)
def run(
    inputs: Annotated[list[str], typer.Argument(help=INPUTS_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output JSONL: one line per input document.")],
    config: ConfigOpt = None,
    model: ModelOpt = None,
    backend: Annotated[str, typer.Option(help="auto (direct, then HTTP fallback), direct, or http.")] = "auto",
    server: Annotated[
        list[str] | None,
        typer.Option(
            "--server", help="OpenAI-compatible server, http://HOST:PORT (a trailing /v1 is accepted; repeatable)."
        ),
    ] = None,
    types: TypesOpt = None,
    types_file: TypesFileOpt = None,
    chunk_tokens: ChunkOpt = None,
    overlap: OverlapOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_model_len: MaxLenOpt = None,
    dtype: DtypeOpt = None,
    queue_requests: Annotated[
        int | None,
        typer.Option(help="Requests prepared and unanswered at most (default 0: twice what the engine holds)."),
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="HTTP requests in flight (default 16).")] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(help="vLLM GPU memory fraction.")] = None,
    tp: Annotated[
        int | None, typer.Option("--tp", help="Tensor parallel: GPUs per engine (tensor_parallel_size).")
    ] = None,
    dp: Annotated[
        int | None,
        typer.Option(
            "--dp",
            help="Data parallel: engine replicas of --tp GPUs each; over 1 runs them on a local Ray "
            "instance (needs the ray extra). Output: still one file in input order.",
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="I/N: only the documents of shard I of N (0-based; by a SHA-256 of the id). "
            "Join the outputs with `vllm-extract merge`.",
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="vllm (the engine in this process) or ray (engine replicas on a Ray cluster).")
    ] = "vllm",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="--engine ray: the cluster (HOST:6379, ray://HOST:10001, auto; default $RAY_ADDRESS, "
            "else a local instance).",
        ),
    ] = None,
    replicas: Annotated[int | None, typer.Option(help="--engine ray: engine replicas (default --dp, else 1).")] = None,
    gpus_per_replica: Annotated[
        float | None,
        typer.Option(help="--engine ray: GPUs each replica reserves (default --tp; 0 on CPU; 0.5 packs two)."),
    ] = None,
    id_field: IdFieldOpt = None,
    text_field: TextFieldOpt = None,
    glob: GlobOpt = None,
    decoding: DecodingOpt = None,
    mentions: MentionsOpt = None,
    strategy: StrategyOpt = None,
    type_groups: TypeGroupsOpt = None,
    passes: PassesOpt = None,
    examples: ExamplesOpt = None,
    keep_ungrounded: Annotated[bool, typer.Option(help="Keep entities not found in the text.")] = False,
    batch_invariant: Annotated[
        bool,
        typer.Option(
            "--batch-invariant",
            help="vLLM's batch-invariant kernels (VLLM_BATCH_INVARIANT=1): results independent of batch "
            "make-up. NVIDIA GPUs of compute capability 8.0+ (beta in vLLM 0.32); untested on CPU.",
        ),
    ] = False,
    resume: Annotated[bool, typer.Option(help="Continue an earlier run into the same --out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    reuse: Annotated[
        list[Path] | None,
        typer.Option(
            "--reuse",
            help="Earlier output (repeatable): copy its records whose id, text and settings match; extract the rest.",
        ),
    ] = None,
    texts: Annotated[
        Path | None,
        typer.Option("--texts", help="Store converted texts (PDF, DOCX, HTML) here by hash, not in each record."),
    ] = None,
    errors: Annotated[Path | None, typer.Option("--errors", help="Also copy error records here.")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write a JSON run report here.")] = None,
    metrics_file: Annotated[Path | None, typer.Option(help="Write Prometheus metrics here (.prom).")] = None,
    skip_gpu_check: Annotated[bool, typer.Option(help="Skip the GPU memory pre-flight.")] = False,
    wait_for_gpu: Annotated[float | None, typer.Option(help="Wait up to SECONDS for GPU memory.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the summary.")] = False,
    log_interval: Annotated[float, typer.Option(help="Seconds between plain log lines (non-terminal).")] = 30.0,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging; the engine's own output on the terminal.")
    ] = False,
) -> None:
    """Extract entities from documents into JSONL (one line per document, input order).

    The engine's own output (warnings, loading bars) goes to OUT.engine.log unless --verbose.
    Example: vllm-extract run docs/ --out entities.jsonl --model tiny
    """
    flags = SettingsFlags.from_options(locals())  # first: locals() is then only the options
    _setup_logging(verbose, quiet)
    if engine == "ray" and ray_address is None:
        ray_address = os.environ.get("RAY_ADDRESS") or None  # Ray's own variable, for --engine ray only
    engine_log = None if verbose else engine_log_path(out)
    captured = engine_output_to(engine_log)
    stop = threading.Event()
    received: list[int] = []
    try:
        settings = _settings(config, flags)
        shard_spec = parse_shard(shard) if shard is not None else None
        options = RunOptions(
            engine=engine,
            ray_address=ray_address,
            replicas=replicas,
            gpus_per_replica=gpus_per_replica,
            shard=(shard_spec.index, shard_spec.count) if shard_spec else None,
            backend=backend,
            resume=resume,
            overwrite=overwrite,
            errors_path=errors,
            report_path=report,
            metrics_path=metrics_file,
            skip_gpu_check=skip_gpu_check,
            wait_for_gpu=wait_for_gpu,
            stop_event=stop,
            engine_log=engine_log,
            reuse=list(reuse or ()),
            texts_dir=texts,
        )
        check_run_paths(inputs, out, settings, options)  # before the engine log is opened beside --out
        with captured as terminal:
            # With --verbose the engine's own output shares the terminal: no panel while it loads.
            display = RunDisplay(terminal, quiet=quiet, log_interval=log_interval, show_loading=not verbose)
            options.subscribers = [display]
            with _stop_on_signals(stop, received), display:
                result = asyncio.run(run_job(inputs, out, settings, options))
    except VLLMClientError as exc:
        if captured.wrote:
            err.print(f"the engine's own output is in {engine_log}", highlight=False)
        raise _fail(exc) from None
    if received:
        err.print(f"interrupted: finished work is in {out}; rerun with --resume to continue", highlight=False)
        raise typer.Exit(ExitCode.SIGINT if received[0] == signal.SIGINT else ExitCode.SIGTERM)
    raise typer.Exit(for_outcome(result.outcome))


class _stop_on_signals:
    """First SIGINT/SIGTERM: stop the feed and finish the documents in flight. Second: stop now."""

    def __init__(self, stop: threading.Event, received: list[int]) -> None:
        self.stop = stop
        self.received = received
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)
        if self.stop.is_set():
            code = ExitCode.SIGINT if signum == signal.SIGINT else ExitCode.SIGTERM
            err.print("second signal: stopping now (documents already written are kept)")
            raise SystemExit(code)
        self.stop.set()
        err.print("stop requested: finishing the batch in flight, then exiting (signal again to stop now)")

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@app.command()
def plan(
    inputs: Annotated[list[str], typer.Argument(help=INPUTS_HELP)],
    config: ConfigOpt = None,
    model: ModelOpt = None,
    types: TypesOpt = None,
    types_file: TypesFileOpt = None,
    chunk_tokens: ChunkOpt = None,
    overlap: OverlapOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_model_len: MaxLenOpt = None,
    dtype: DtypeOpt = None,
    id_field: IdFieldOpt = None,
    text_field: TextFieldOpt = None,
    glob: GlobOpt = None,
    decoding: DecodingOpt = None,
    mentions: MentionsOpt = None,
    strategy: StrategyOpt = None,
    type_groups: TypeGroupsOpt = None,
    passes: PassesOpt = None,
    examples: ExamplesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Dry run: count documents, chunks and prompt tokens with the model's tokenizer; list bad inputs.

    Loads no engine. Example: vllm-extract plan docs/ --model tiny
    """
    flags = SettingsFlags.from_options(locals())  # first: locals() is then only the options
    _setup_logging(False, False)
    from ..run.dry_run import plan_job

    try:
        settings = _settings(config, flags)
        result = plan_job(inputs, settings)
    except VLLMClientError as exc:
        raise _fail(exc) from None
    import dataclasses

    import orjson

    data = dataclasses.asdict(result)
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out = Console()
        label = "exact" if result.exact_tokens else "ESTIMATED (no model tokenizer)"
        out.print(
            f"documents: {result.documents}   bad inputs: {len(result.bad_inputs)}   "
            f"skipped files: {len(result.skipped_files)}"
        )
        pages = f"   pages (PDF/DOCX/HTML): {result.pages}" if result.pages else ""
        tokens = f"prompt tokens: {result.prompt_tokens} ({label}, {result.tokenizer})"
        out.print(f"chunks: {result.chunks}   requests: {result.requests}{pages}   {tokens}")
        asked = f"strategy: {result.strategy} ({len(result.questions)} per chunk)   passes: {result.passes}"
        if result.examples:
            asked += "   examples from: " + ", ".join(f"{e['id']}[{e['start']}:{e['end']}]" for e in result.examples)
        out.print(asked, highlight=False, markup=False, soft_wrap=True)
        out.print(
            f"largest prompt: {result.largest_prompt_tokens} tokens   chunk size: {result.chunk_tokens}   "
            f"context: {result.max_model_len}"
        )
        out.print(f"dtype: {result.dtype} ({result.dtype_reason})", highlight=False, markup=False, soft_wrap=True)
        out.print(f"step budget: {result.step_budget_reason}", highlight=False, markup=False, soft_wrap=True)
        for bad in result.bad_inputs:
            out.print(f"[red]bad[/] {bad['id']}: {bad['kind']}: {bad['message']}", highlight=False)
    raise typer.Exit(ExitCode.DOCUMENT_ERRORS if result.bad_inputs else ExitCode.OK)
