"""The Typer app and what its commands share: options, settings overrides, logging, error exits.

It parses flags, builds Settings (CLI > env > file > defaults), calls the library, and is the one
place that turns errors and outcomes into exit codes: the table and its rules are
``exit_codes.py``; ``_fail`` prints an error of the tree, ``_Commands`` catches what a command
did not (an unexpected error is a crash, exit 70, with its traceback; a closed standard output,
``| head``, is exit 141 without a word: ``closed_pipe``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from .exit_codes import ExitCode, for_error, help_text

EXIT_CODES_HELP = help_text()
err = Console(stderr=True)


class _Commands(TyperGroup):
    """The app's command group: an error no command turned into its exit code ends here.

    An error of the tree gets its code (``exit_codes.for_error``); anything else (an ``OSError``
    such as a full disk, a bug) is a crash: its traceback, one red line, exit 70. Exits, usage
    errors, aborts and interrupts pass through to Click as they are.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:  # `vllm-extract --help` prints here
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:
            raise closed_pipe() from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # exits, usage errors: Typer's own
            raise
        except BrokenPipeError:  # `vllm-extract config show | head -1`: not a crash
            raise closed_pipe() from None
        except Exception as exc:  # noqa: BLE001 - the one place every other error gets its code
            raise _fail(exc) from None


def closed_pipe() -> typer.Exit:
    """Standard output's reader went away (``| head``): point stdout at /dev/null, so that the
    flush at exit cannot fail again and print "Exception ignored", and exit 141 (128 + SIGPIPE,
    what the shell reports for ``cat`` in the same place) without a word."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor (a test's captured stdout): nothing to flush
        pass
    return typer.Exit(int(ExitCode.CLOSED_PIPE))


def _rich_closed_pipe(self: Console) -> None:
    raise SystemExit(closed_pipe().exit_code)


def exit_quietly_on_closed_pipes() -> None:
    """Make rich's own handling of a closed stdout (Typer's help, tables) exit 141 too: rich
    redirects stdout and exits 1 (``Console.on_broken_pipe``, its documented hook), and 1 here
    means "some documents failed". The console-script entry point calls this: the process is
    the CLI's then, and library users keep rich as it is."""
    Console.on_broken_pipe = _rich_closed_pipe  # type: ignore[method-assign]


app = typer.Typer(
    cls=_Commands,
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


def _fail(error: BaseException) -> typer.Exit:
    """One red line (what happened; what to do) and the documented exit code. A crash (an error
    outside the tree, or one of the tree no rule expects to end a command) also says so, and an
    error outside the tree prints its traceback first: it is a bug or an environment fault."""
    from rich.markup import escape

    from ..exceptions import VLLMClientError

    code = for_error(error)
    if code == ExitCode.CRASH and not isinstance(error, VLLMClientError):
        import traceback

        err.print("".join(traceback.format_exception(error)).rstrip(), markup=False, highlight=False)
    message = str(error) if isinstance(error, VLLMClientError) else f"{type(error).__name__}: {error}"
    # escape: a message naming an extra (`vllm-extract[ray]`) is not markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    if code == ExitCode.CRASH:
        err.print(
            "crashed (exit 70): records already written stand; fix the cause, then rerun with --resume"
            + ("" if isinstance(error, VLLMClientError) else "; if it looks like a bug, report the traceback above"),
            highlight=False,
        )
    return typer.Exit(int(code))


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
DtypeOpt = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        help="Model dtype: auto (default: bfloat16 on a CPU with avx512_bf16/amx_bf16, float32 on other CPUs, "
        "vLLM's pick on GPU), bfloat16, float32, float16. Pin it on a fleet of mixed CPUs so shards merge.",
    ),
]


DecodingOpt = Annotated[
    str | None,
    typer.Option(
        "--decoding",
        help="grounded (default: entity text constrained to the chunk's own words) or schema (JSON schema only).",
    ),
]
MentionsOpt = Annotated[
    str | None,
    typer.Option("--mentions", help="listed (what the model names) or all (also every further occurrence)."),
]
StrategyOpt = Annotated[
    str | None,
    typer.Option(
        "--strategy",
        help="all-types (default: one request per chunk) or per-type (one request per chunk and type, or "
        "group of types; the chunk's prefill is shared through the prefix cache).",
    ),
]
TypeGroupsOpt = Annotated[
    str | None,
    typer.Option("--type-groups", help="--strategy per-type: types asked together, e.g. PERSON+JUDGE,DATE+MONEY."),
]
PassesOpt = Annotated[
    int | None,
    typer.Option(
        "--passes", help="Answers per request (1-5, default 1): each later pass asks for entities not yet listed."
    ),
]
ExamplesOpt = Annotated[
    Path | None,
    typer.Option(
        "--examples",
        help="Gold JSONL file (the eval format): a few short documents or windows become worked examples. "
        "Do not score on the documents they come from.",
        exists=True,
        dir_okay=False,
    ),
]


@dataclass
class SettingsFlags:
    """The command-line flags that become settings overrides (None: not given). Built by ``run``
    and ``plan``; ``overrides()`` is the one place that maps them onto setting names."""

    model: str | None = None
    types: str | None = None
    types_file: Path | None = None
    chunk_tokens: int | None = None
    overlap: float | None = None
    max_tokens: int | None = None
    max_model_len: int | None = None
    id_field: str | None = None
    text_field: str | None = None
    glob: list[str] | None = None
    decoding: str | None = None
    mentions: str | None = None
    strategy: str | None = None
    type_groups: str | None = None
    passes: int | None = None
    examples: Path | None = None
    dtype: str | None = None
    queue_requests: int | None = None
    concurrency: int | None = None
    gpu_memory_utilization: float | None = None
    tp: int | None = None
    dp: int | None = None
    keep_ungrounded: bool = False
    batch_invariant: bool = False
    servers: list[str] = field(default_factory=list)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SettingsFlags:
        """The flags among a command's options (its ``locals()``), by field name; ``server``
        (repeatable ``--server``) becomes ``servers``. Options that are not settings are ignored."""
        values = {f.name: options[f.name] for f in fields(cls) if f.name in options}
        values["servers"] = list(options.get("server") or ())
        values["keep_ungrounded"] = bool(options.get("keep_ungrounded"))
        values["batch_invariant"] = bool(options.get("batch_invariant"))
        return cls(**values)

    def overrides(self) -> dict[str, Any]:
        from ..config import load_entity_types_file

        entity_types: Any = self.types  # "" is given, and empty: an error, not the default types
        if self.types_file is not None:
            entity_types = load_entity_types_file(self.types_file)
        values: dict[str, Any] = {
            "model": self.model,
            "entity_types": entity_types,
            "chunk_tokens": self.chunk_tokens,
            "chunk_overlap": self.overlap,
            "max_completion_tokens": self.max_tokens,
            "max_model_len": self.max_model_len,
            "id_field": self.id_field,
            "text_field": self.text_field,
            "globs": tuple(self.glob) if self.glob else None,
            "decoding": self.decoding,
            "mentions": self.mentions,
            "strategy": self.strategy,
            "type_groups": self.type_groups,
            "passes": self.passes,
            "examples_file": str(self.examples) if self.examples is not None else None,
            "dtype": self.dtype,
            "queue_requests": self.queue_requests,
            "concurrency": self.concurrency,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "tensor_parallel_size": self.tp,
            "data_parallel_size": self.dp,
            "keep_ungrounded": True if self.keep_ungrounded else None,
            "batch_invariant": True if self.batch_invariant else None,
        }
        if self.servers:
            values["base_url"] = self.servers[0]
            values["servers"] = list(self.servers[1:])
        return values


def _settings(config: Path | None, flags: SettingsFlags | None = None) -> Any:
    """Settings with precedence flags > ``VLLM_EXTRACT_*`` > config file > defaults."""
    from ..config import load_settings

    return load_settings(config, overrides=(flags or SettingsFlags()).overrides())


class engine_output_to:
    """Send this process's file descriptors 1 and 2 to ``path`` (appending) while the engine runs.

    vLLM, torch and Triton write warnings and loading bars straight to the descriptors (its worker
    processes inherit them), so Python-level redirection cannot catch them. ``__enter__`` returns a
    rich Console on the original stderr for the live panel; the shared ``err`` console and the
    ``vllm_extract`` log handlers are pointed there too, so our messages and errors still reach the
    terminal. With ``path`` None, or when stderr is not a real descriptor (an in-process test
    runner), nothing is redirected.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._saved: list[int] = []
        self._terminal: Any = None
        self._previous_err_file: Any = None
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._header_end: int | None = None

    @property
    def wrote(self) -> bool:
        """Whether anything reached the log after this run's header line (False when nothing was
        redirected): only then is the log worth naming in an error."""
        if self.path is None or self._header_end is None:
            return False
        try:
            return self.path.stat().st_size > self._header_end
        except OSError:
            return False

    def __enter__(self) -> Console:
        if self.path is None or not _is_fd(sys.stderr, 2) or not _is_fd(sys.stdout, 1):
            return err
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = [os.dup(1), os.dup(2)]
        log_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.write(log_fd, f"== vllm-extract run started {stamp} (pid {os.getpid()})\n".encode())
        self._header_end = os.fstat(log_fd).st_size
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        self._terminal = os.fdopen(os.dup(self._saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
        self._previous_err_file = err.file
        err.file = self._terminal
        for handler in logging.getLogger("vllm_extract").handlers:
            if isinstance(handler, logging.StreamHandler) and not hasattr(handler, "console"):
                self._handlers.append((handler, handler.setStream(self._terminal)))
        return err

    def __exit__(self, *exc: object) -> None:
        if not self._saved:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for handler, stream in self._handlers:
            handler.setStream(stream)
        err.file = self._previous_err_file
        self._terminal.close()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._saved = []


def _is_fd(stream: Any, fd: int) -> bool:
    try:
        return bool(stream.fileno() == fd)
    except (AttributeError, OSError, ValueError):
        return False
