"""The errors vllm-extract raises on purpose, as one tree.

    VLLMClientError                  root: catch this to catch every error we raise on purpose
    ├── ConfigurationError           a setting, flag, config file or model name is wrong
    │   ├── InputError               an input path cannot be read at all
    │   └── BudgetError              the budgets leave no room for document text
    ├── ModelNotLoadedError          vLLM is missing, or the model did not load
    │   └── ModelPreparationError    the embedded tiny model could not be prepared
    ├── GPUMonitorError              NVML/driver missing, GPU not readable
    │   └── GPUMemoryError           not enough free GPU (or host) memory to start
    ├── ConnectionError              no server answers / no client could be created
    ├── GenerationError              one request failed; `can_retry` says if retrying helps
    ├── ContextOverflowError         a prompt does not fit the model's context
    ├── EngineRestartsExhausted      the engine died more often than `max_engine_restarts` allows
    ├── OutputError                  the output cannot be written, would be overwritten, or a resume
    │   │                            would mix runs (inputs or settings changed)
    │   └── RecordError              a line or dict is not a valid record (damaged output)
    │       └── UnencodableRecordError  a record holds what JSON cannot carry (lone surrogates)
    ├── MergeError                   shard outputs do not add up to one run; `problems` says why
    └── LockHeldError                another live run holds the output's lock

Each error carries a message saying what happened and a ``hint`` saying what to do. Library
code raises; only the CLI turns errors into exit codes (``cli/exit_codes.py``, the one table).
Per-document problems are not raised: they become ``status: "error"`` records in the output.
Outside the tree: ``ValueError`` from the data classes' own checks when called wrongly (a span
that is not a span of its text, an unknown ``mentions`` mode), and what the system raises
(``OSError`` for a full disk, ``MemoryError``): the CLI reports those as a crash.
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
    "MergeError",
    "ModelNotLoadedError",
    "ModelPreparationError",
    "OutputError",
    "RecordError",
    "UnencodableRecordError",
    "VLLMClientError",
]


class VLLMClientError(Exception):
    """Root of every error raised by vllm-extract."""


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



class InputError(ConfigurationError):
    """An input named on the command line cannot be used at all (missing path, ...)."""


class BudgetError(ConfigurationError):
    """The configured context, completion budget and instructions leave no room for document text.

    Raised while the run plan is built, before any model loads.
    """


class ModelNotLoadedError(VLLMClientError):
    """vLLM is not installed, the model failed to load, or a client was used before connect()."""



class ModelPreparationError(ModelNotLoadedError):
    """The embedded tiny model could not be prepared (missing package, bad checksum, ...)."""


class GPUMonitorError(VLLMClientError):
    """GPUs cannot be read: no NVIDIA driver, NVML missing, or a device query failed."""



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


class MergeError(VLLMClientError):
    """The shard outputs do not add up to one complete run; ``problems`` lists every reason found
    (a missing or duplicated shard or document, different inputs or fingerprints). Nothing was
    written."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            f"cannot merge: {len(problems)} problem(s) found; nothing was written",
            hint="fix or rerun the shards named above, then merge again",
        )
        self.problems = problems


class LockHeldError(VLLMClientError):
    """Another live run is writing the same output file."""


    def __init__(self, message: str, *, pid: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.pid = pid

