"""The counts and timings of a run: what ``ExtractionPipeline.run`` returns and the report's body."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunSummary"]


@dataclass
class RunSummary:
    """Counts and timings of a run (also the body of the run report). ``engine``: what the engine
    side measured (occupancy, idle share, steps; see ``clients.stream``); ``stopped``: why the run
    stopped before its end (the engine restart bound was spent), None when it did not. ``requests``
    counts every answer asked for (first answers, retries of cut answers, further passes);
    ``cached_tokens`` the prompt tokens the engine served from its prefix cache (vLLM's
    ``num_cached_tokens``; 0 from servers that do not report it), and ``as_dict`` adds their share
    of ``prompt_tokens`` and the requests per chunk."""

    documents: int = 0
    ok: int = 0
    errors: int = 0
    skipped_done: int = 0
    reused: int = 0
    duplicate_ids: int = 0
    entities: int = 0
    chunks: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    truncated_chunks: int = 0
    truncation_retries: int = 0
    looping_not_retried: int = 0
    ungrounded_dropped: int = 0
    prompt_splits: int = 0
    generation_seconds: float = 0.0
    preparation_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    interrupted: bool = False
    stopped: str | None = None
    engine_restarts: int = 0
    poison_requests: int = 0
    exact_tokens: bool = True
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    skipped_files: list[str] = field(default_factory=list)
    engine: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["errors_by_kind"] = dict(self.errors_by_kind)
        elapsed = self.elapsed_seconds or 1e-9
        out["documents_per_second"] = round(self.documents / elapsed, 4)
        out["generated_tokens_per_second"] = round(self.completion_tokens / elapsed, 2)
        out["requests_per_chunk"] = round(self.requests / self.chunks, 3) if self.chunks else 0.0
        out["cached_prompt_share"] = round(self.cached_tokens / self.prompt_tokens, 4) if self.prompt_tokens else 0.0
        return out
