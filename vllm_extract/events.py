"""Events the pipeline emits while it runs. Renderers (the rich panel, plain logs, run reports)
subscribe to them; the pipeline knows nothing about rendering.

A subscriber is any callable taking one event. It must be quick: it runs on the thread of the
run's event loop (the one that called ``run_job``; the pipeline's preparation thread emits
nothing), except ``MemorySample``, which arrives from the sampler's thread, so a subscriber that
takes both must not assume one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "ChunkDone",
    "DocumentDone",
    "EnginePhase",
    "Event",
    "MemoryReading",
    "MemorySample",
    "RunFinished",
    "RunStarted",
    "Subscriber",
]


@dataclass(frozen=True, slots=True)
class RunStarted:
    documents_total: int | None  # None when the inputs cannot be counted up front (stdin)
    model: str
    backend: str
    exact_tokens: bool
    documents_skipped: int = 0  # already present in the output (resume)


@dataclass(frozen=True, slots=True)
class EnginePhase:
    """What the engine side is doing: ``loading`` (the run is about to start or connect the engine;
    ``detail`` is the model's name), ``prefill`` (requests sent, no answer yet; ``prompt_tokens``:
    the prompt tokens sent so far, all in flight) or ``generating`` (the first answer is in)."""

    phase: str
    prompt_tokens: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ChunkDone:
    """One request's final response arrived (once per request, as it finishes: a chunk, or one
    question about a chunk with ``--strategy per-type``). The tokens are the request's usage, a
    retry's and further passes' included; ``retry``: its first answer was cut and asked again;
    ``chunk_done``: every request of its chunk is now answered."""

    request_id: str
    completion_tokens: int
    retry: bool = False
    prompt_tokens: int = 0
    chunk_done: bool = True


@dataclass(frozen=True, slots=True)
class DocumentDone:
    """One output record was written."""

    doc_id: str
    status: str  # "ok" or "error"
    entities: int
    chunks: int
    error_kind: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class MemoryReading:
    """Memory of one device (a GPU, or the host on the CPU backend) at one moment."""

    device: str  # "GPU 0" or "host"
    used_gb: float
    total_gb: float
    utilization_percent: float | None = None  # compute utilization, GPUs only

    @property
    def fraction(self) -> float:
        return self.used_gb / self.total_gb if self.total_gb else 0.0


@dataclass(frozen=True, slots=True)
class MemorySample:
    readings: tuple[MemoryReading, ...]
    threshold: float
    over_threshold: bool
    alerts: int  # threshold crossings so far in this run


@dataclass(frozen=True, slots=True)
class RunFinished:
    summary: dict[str, object] = field(default_factory=dict)


Event = RunStarted | EnginePhase | ChunkDone | DocumentDone | MemorySample | RunFinished
Subscriber = Callable[[Event], None]
