"""The Typer app and what its commands share: options, settings overrides, logging, error exits.

It parses flags, builds Settings (CLI > env > file > defaults), calls the library, and is the one
place that turns errors into exit codes:

    0  every document ok            1  finished, some documents failed
    2  usage or configuration error 3  GPU, model or server unavailable
    4  output lock held by another run
    130 / 143  interrupted by SIGINT / SIGTERM (finished work is kept; rerun with --resume)
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

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
    from ..exceptions import exit_code_for

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
    from ..config import load_entity_types_file, load_settings

    types_file = cli.pop("types_file", None)
    if types_file is not None:
        cli["entity_types"] = load_entity_types_file(types_file)
    elif cli.get("types"):
        cli["entity_types"] = cli["types"]
    cli.pop("types", None)
    if cli.get("globs"):
        cli["globs"] = tuple(cli["globs"])
    return load_settings(config, overrides=cli)


