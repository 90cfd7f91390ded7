"""The ``vllm-extract`` command: a thin Typer shell over the library.

It parses flags, builds Settings (CLI > env > file > defaults), calls the library, and is the one
place that turns errors into exit codes:

    0  every document ok            1  finished, some documents failed
    2  usage or configuration error 3  GPU, model or server unavailable
    4  output lock held by another run
    130 / 143  interrupted by SIGINT / SIGTERM (finished work is kept; rerun with --resume)
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from .exceptions import ConfigurationError, VLLMClientError

EXIT_OK, EXIT_DOC_ERRORS, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_LOCKED = 0, 1, 2, 3, 4
EXIT_SIGINT, EXIT_SIGTERM = 130, 143

EXIT_CODES_HELP = (
    "Exit codes: 0 all documents ok; 1 finished but some documents failed; 2 usage or configuration "
    "error; 3 GPU, model or server unavailable; 4 output lock held by another run; 130/143 interrupted."
)

app = typer.Typer(
    name="vllm-extract",
    help="Batch entity extraction over documents with vLLM.\n\n"
    "Examples:\n\n"
    "  vllm-extract run docs/ --out entities.jsonl\n\n"
    "  vllm-extract run examples/docs --model tiny --out entities.jsonl\n\n"
    "  vllm-extract gpu-status --json\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Prepare and locate models (the embedded tiny demo model).", no_args_is_help=True)
config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")

err = Console(stderr=True)


def _fail(error: BaseException) -> typer.Exit:
    """One red line (what happened; what to do) and the documented exit code."""
    from .exceptions import exit_code_for

    err.print(f"[bold red]error:[/] {error}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(exit_code_for(error))


def _setup_logging(verbose: bool, quiet: bool) -> None:
    # vLLM's engine processes log on their own; keep them to errors unless asked (--verbose).
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if verbose else "ERROR")
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "INFO" if verbose else "ERROR")
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    if err.is_terminal:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=err, show_path=False, show_time=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("vllm_extract")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


# Options shared by run and plan -------------------------------------------------------------
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML config file (default: ./vllm-extract.toml).")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="'tiny' (embedded demo), a local folder, or a model name.")
]
TypesOpt = Annotated[str | None, typer.Option("--types", help="Entity types, comma-separated: PERSON,ORGANIZATION,...")]
TypesFileOpt = Annotated[
    Path | None, typer.Option("--types-file", help="JSON/TOML file: {TYPE: description}.", exists=True)
]
ChunkOpt = Annotated[int | None, typer.Option("--chunk-tokens", help="Target chunk size in tokens (default 12000).")]
OverlapOpt = Annotated[float | None, typer.Option("--overlap", help="Chunk overlap fraction (default 0.1).")]
MaxTokensOpt = Annotated[int | None, typer.Option("--max-tokens", help="Completion budget per chunk (default 4096).")]
MaxLenOpt = Annotated[int | None, typer.Option("--max-model-len", help="Context length cap (default 32768).")]
IdFieldOpt = Annotated[str | None, typer.Option("--id-field", help="JSONL field holding the id (default id).")]
TextFieldOpt = Annotated[str | None, typer.Option("--text-field", help="JSONL field holding the text (default text).")]
GlobOpt = Annotated[list[str] | None, typer.Option("--glob", help="File pattern inside folders (repeatable).")]


def _settings(config: Path | None, **cli: Any) -> Any:
    from .config import load_entity_types_file, load_settings

    types_file = cli.pop("types_file", None)
    if types_file is not None:
        cli["entity_types"] = load_entity_types_file(types_file)
    elif cli.get("types"):
        cli["entity_types"] = cli["types"]
    cli.pop("types", None)
    if cli.get("globs"):
        cli["globs"] = tuple(cli["globs"])
    return load_settings(config, overrides=cli)


@app.command(epilog=EXIT_CODES_HELP)
def run(
    inputs: Annotated[list[str], typer.Argument(help="JSONL files, folders, or - for JSONL on stdin.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output JSONL: one line per input document.")],
    config: ConfigOpt = None,
    model: ModelOpt = None,
    backend: Annotated[str, typer.Option(help="auto (direct, then HTTP fallback), direct, or http.")] = "auto",
    server: Annotated[
        list[str] | None, typer.Option("--server", help="OpenAI-compatible server URL (repeatable).")
    ] = None,
    types: TypesOpt = None,
    types_file: TypesFileOpt = None,
    chunk_tokens: ChunkOpt = None,
    overlap: OverlapOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_model_len: MaxLenOpt = None,
    window_chunks: Annotated[int | None, typer.Option(help="Chunks per native batch (default 256).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="HTTP requests in flight (default 16).")] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(help="vLLM GPU memory fraction.")] = None,
    id_field: IdFieldOpt = None,
    text_field: TextFieldOpt = None,
    glob: GlobOpt = None,
    keep_ungrounded: Annotated[bool, typer.Option(help="Keep entities not found in the text.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an earlier run into the same --out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    errors: Annotated[Path | None, typer.Option("--errors", help="Also copy error records here.")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write a JSON run report here.")] = None,
    metrics_file: Annotated[Path | None, typer.Option(help="Write Prometheus metrics here (.prom).")] = None,
    skip_gpu_check: Annotated[bool, typer.Option(help="Skip the GPU memory pre-flight.")] = False,
    wait_for_gpu: Annotated[float | None, typer.Option(help="Wait up to SECONDS for GPU memory.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the summary.")] = False,
    log_interval: Annotated[float, typer.Option(help="Seconds between plain log lines (non-terminal).")] = 30.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging (vLLM's too).")] = False,
) -> None:
    """Extract entities from documents into JSONL (one line per document, input order).

    Example: vllm-extract run docs/ --out entities.jsonl --model tiny
    """
    _setup_logging(verbose, quiet)
    from .progress import RunDisplay
    from .runner import RunOptions, run_job

    try:
        if backend not in ("auto", "direct", "http"):
            raise ConfigurationError(f"unknown backend {backend!r}", hint="use auto, direct or http")
        overrides: dict[str, Any] = {
            "model": model,
            "types": types,
            "types_file": types_file,
            "chunk_tokens": chunk_tokens,
            "chunk_overlap": overlap,
            "max_completion_tokens": max_tokens,
            "max_model_len": max_model_len,
            "window_chunks": window_chunks,
            "concurrency": concurrency,
            "gpu_memory_utilization": gpu_memory_utilization,
            "id_field": id_field,
            "text_field": text_field,
            "globs": glob,
            "keep_ungrounded": True if keep_ungrounded else None,
        }
        if server:
            overrides["base_url"] = server[0]
            overrides["servers"] = server[1:]
        settings = _settings(config, **overrides)
        display = RunDisplay(err, quiet=quiet, log_interval=log_interval)
        stop = threading.Event()
        received: list[int] = []
        options = RunOptions(
            backend=backend,
            resume=resume,
            overwrite=overwrite,
            errors_path=errors,
            report_path=report,
            metrics_path=metrics_file,
            skip_gpu_check=skip_gpu_check,
            wait_for_gpu=wait_for_gpu,
            subscribers=[display],
            stop_event=stop,
        )
        with _stop_on_signals(stop, received), display:
            result = asyncio.run(run_job(inputs, out, settings, options))
    except VLLMClientError as exc:
        raise _fail(exc) from None
    if received:
        err.print(f"interrupted: finished work is in {out}; rerun with --resume to continue", highlight=False)
        raise typer.Exit(EXIT_SIGINT if received[0] == signal.SIGINT else EXIT_SIGTERM)
    raise typer.Exit(result.exit_code)


class _stop_on_signals:
    """First SIGINT/SIGTERM: stop after the window in flight. Second: stop now."""

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
            code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
            err.print("second signal: stopping now (finished windows are saved)")
            raise SystemExit(code)
        self.stop.set()
        err.print("stop requested: finishing the batch in flight, then exiting (signal again to stop now)")

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@app.command()
def plan(
    inputs: Annotated[list[str], typer.Argument(help="JSONL files, folders, or - for stdin.")],
    config: ConfigOpt = None,
    model: ModelOpt = None,
    types: TypesOpt = None,
    types_file: TypesFileOpt = None,
    chunk_tokens: ChunkOpt = None,
    overlap: OverlapOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_model_len: MaxLenOpt = None,
    id_field: IdFieldOpt = None,
    text_field: TextFieldOpt = None,
    glob: GlobOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Dry run: count documents, chunks and prompt tokens with the model's tokenizer; list bad inputs.

    Loads no engine. Example: vllm-extract plan docs/ --model tiny
    """
    _setup_logging(False, False)
    from .runner import plan_job

    try:
        settings = _settings(
            config,
            model=model,
            types=types,
            types_file=types_file,
            chunk_tokens=chunk_tokens,
            chunk_overlap=overlap,
            max_completion_tokens=max_tokens,
            max_model_len=max_model_len,
            id_field=id_field,
            text_field=text_field,
            globs=glob,
        )
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
        out.print(f"chunks: {result.chunks}   prompt tokens: {result.prompt_tokens} ({label}, {result.tokenizer})")
        out.print(
            f"largest prompt: {result.largest_prompt_tokens} tokens   chunk size: {result.chunk_tokens}   "
            f"context: {result.max_model_len}"
        )
        for bad in result.bad_inputs:
            out.print(f"[red]bad[/] {bad['id']}: {bad['kind']}: {bad['message']}", highlight=False)
    raise typer.Exit(EXIT_DOC_ERRORS if result.bad_inputs else EXIT_OK)


@app.command("gpu-status")
def gpu_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    watch: Annotated[float | None, typer.Option(help="Refresh every SECONDS until Ctrl-C.")] = None,
) -> None:
    """Show every GPU: memory, utilization, temperature, power, processes.

    Exit 0 when GPUs are readable; 3 with a one-line reason when there is no GPU or driver.
    Example: vllm-extract gpu-status --json
    """
    import orjson

    from .gpu import GPUMonitor
    from .progress import render_gpu_table

    try:
        monitor = GPUMonitor()
        stats = monitor.get_all_stats()
        if as_json:
            sys.stdout.write(orjson.dumps([s.to_dict() for s in stats], option=orjson.OPT_INDENT_2).decode() + "\n")
            return
        out = Console()
        if watch is None:
            out.print(render_gpu_table(stats))
            return
        from rich.live import Live

        with Live(render_gpu_table(stats), console=out, refresh_per_second=4) as live:
            while True:
                time.sleep(max(watch, 0.2))
                live.update(render_gpu_table(monitor.get_all_stats()))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_OK) from None
    except VLLMClientError as exc:
        raise _fail(exc) from None


@models_app.command("prepare")
def models_prepare(
    name: Annotated[str, typer.Argument(help="The model to prepare: tiny.")] = "tiny",
) -> None:
    """Prepare the embedded tiny model (offline, checksummed, idempotent) and print its folder.

    Example: vllm-extract models prepare tiny
    """
    _setup_logging(False, False)
    from .models import TINY_MODEL, prepare_tiny_model

    try:
        if name != TINY_MODEL:
            raise ConfigurationError(f"only {TINY_MODEL!r} can be prepared, not {name!r}")
        prepared = prepare_tiny_model()
    except VLLMClientError as exc:
        raise _fail(exc) from None
    status = "prepared" if prepared.created else "already prepared"
    err.print(f"tiny model {status}: {prepared.path}", highlight=False)
    sys.stdout.write(f"{prepared.path}\n")


@config_app.command("show")
def config_show(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the effective configuration (defaults < file < VLLM_EXTRACT_* env).

    Example: VLLM_EXTRACT_CHUNK_TOKENS=8000 vllm-extract config show
    """
    import orjson

    try:
        settings = _settings(config)
    except VLLMClientError as exc:
        raise _fail(exc) from None
    data = settings.as_dict()
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    for key, value in data.items():
        if key == "entity_types":
            value = ",".join(t["name"] for t in value)
        sys.stdout.write(f"{key} = {value}\n")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
