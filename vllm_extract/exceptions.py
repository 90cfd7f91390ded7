"""Every error vllm-extract raises, as one tree.

    VLLMClientError                  root: catch this to catch everything we raise
    ├── ConfigurationError           a setting, flag, config file or model name is wrong   (exit 2)
    │   ├── InputError               an input path cannot be read at all                   (exit 2)
    │   └── BudgetError              the budgets leave no room for document text           (exit 2)
    ├── ModelNotLoadedError          vLLM is missing, or the model did not load             (exit 3)
    │   └── ModelPreparationError    the embedded tiny model could not be prepared          (exit 3)
    ├── GPUMonitorError              NVML/driver missing, GPU not readable                  (exit 3)
    │   └── GPUMemoryError           not enough free GPU (or host) memory to start          (exit 3)
    ├── ConnectionError              no server answers / no client could be created         (exit 3)
    ├── GenerationError              one request failed; `can_retry` says if retrying helps
    ├── ContextOverflowError         a prompt does not fit the model's context
    ├── OutputError                  the output cannot be written, would be overwritten, or a resume
    │   │                            would mix runs (inputs or settings changed)                (exit 2)
    │   └── RecordError              a line or dict is not a valid record (damaged output)    (exit 2)
    │       └── UnencodableRecordError  a record holds what JSON cannot carry (lone surrogates)
    └── LockHeldError                another live run holds the output's lock                (exit 4)

Each error carries a message saying what happened and a ``hint`` saying what to do. Library
code raises; only the CLI turns these into exit codes (see ``exit_code_for``).
Per-document problems are not raised: they become ``status: "error"`` records in the output.
"""

from __future__ import annotations

import builtins

__all__ = [
    "BudgetError",
    "ConfigurationError",
    "ConnectionError",
    "ContextOverflowError",
    "EngineRestartsExhausted",
    "GPUMemoryError",
    "GPUMonitorError",
    "GenerationError",
    "InputError",
    "LockHeldError",
    "ModelNotLoadedError",
    "ModelPreparationError",
    "OutputError",
    "RecordError",
    "UnencodableRecordError",
    "VLLMClientError",
    "exit_code_for",
]


class VLLMClientError(Exception):
    """Root of every error raised by vllm-extract."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigurationError(VLLMClientError):
    """A setting, flag, configuration file or model name is invalid."""

    exit_code = 2


class InputError(ConfigurationError):
    """An input named on the command line cannot be used at all (missing path, ...)."""


class BudgetError(ConfigurationError):
    """The configured context, completion budget and instructions leave no room for document text.

    Raised while the run plan is built, before any model loads.
    """


class ModelNotLoadedError(VLLMClientError):
    """vLLM is not installed, the model failed to load, or a client was used before connect()."""

    exit_code = 3


class ModelPreparationError(ModelNotLoadedError):
    """The embedded tiny model could not be prepared (missing package, bad checksum, ...)."""


class GPUMonitorError(VLLMClientError):
    """GPUs cannot be read: no NVIDIA driver, NVML missing, or a device query failed."""

    exit_code = 3


class GPUMemoryError(GPUMonitorError):
    """Not enough free accelerator (or host, on CPU) memory to start or continue."""

    def __init__(
        self,
        message: str,
        *,
        utilization_percent: float | None = None,
        required_gb: float | None = None,
        free_gb: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.utilization_percent = utilization_percent
        self.required_gb = required_gb
        self.free_gb = free_gb


class ConnectionError(VLLMClientError, builtins.ConnectionError):
    """No vLLM server answered, or no client (direct nor HTTP) could be created."""

    exit_code = 3

    def __init__(self, message: str, *, base_url: str | None = None, hint: str | None = None) -> None:
        VLLMClientError.__init__(self, message, hint=hint)
        self.base_url = base_url


class GenerationError(VLLMClientError):
    """A generation request failed. ``can_retry`` is True for transient faults (429, 5xx, drops)."""

    def __init__(
        self,
        message: str,
        *,
        can_retry: bool = False,
        status_code: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.can_retry = can_retry
        self.status_code = status_code


class ContextOverflowError(VLLMClientError):
    """A prompt is longer than the prompt budget (or the model's context)."""

    def __init__(
        self,
        message: str,
        *,
        estimated_tokens: int,
        max_tokens: int,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.estimated_tokens = estimated_tokens
        self.max_tokens = max_tokens
        self.excess_tokens = estimated_tokens - max_tokens


class OutputError(VLLMClientError):
    """The output file cannot be written, or would be overwritten without --overwrite/--resume."""

    exit_code = 2


class RecordError(OutputError):
    """A line or dict is not a valid record (bad JSON, a missing or mistyped field, an unknown
    error kind). ``line`` is the 1-based line number in the file when known."""

    def __init__(self, message: str, *, line: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.line = line


class UnencodableRecordError(RecordError):
    """A record holds something JSON cannot carry: a str with lone surrogates (a non-UTF-8 file
    name decoded with ``surrogateescape``), or a value of no JSON type."""


class EngineRestartsExhausted(VLLMClientError):
    """The engine died more often in one run than ``max_engine_restarts`` allows."""


class LockHeldError(VLLMClientError):
    """Another live run is writing the same output file."""

    exit_code = 4

    def __init__(self, message: str, *, pid: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.pid = pid


def exit_code_for(error: BaseException) -> int:
    """The documented process exit code for an error (1 for anything unexpected)."""
    if isinstance(error, VLLMClientError):
        return error.exit_code
    return 1
