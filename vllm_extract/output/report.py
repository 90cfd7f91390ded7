"""Run reports: a JSON report and the same figures in Prometheus text format (node_exporter's
textfile collector reads ``*.prom`` files). Both are written atomically (``files.atomic_write``).
"""

from __future__ import annotations

import calendar
import math
import time
from pathlib import Path
from typing import Any

import orjson

from .files import atomic_write

__all__ = ["prometheus_text", "write_metrics", "write_report"]


def write_report(path: Path, report: dict[str, Any]) -> None:
    atomic_write(path, orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))


_GAUGES = (
    ("documents", "documents", "Documents written in this run, by status", None),
    ("chunks", "chunks", "Chunks sent to the model", None),
    ("requests", "requests", "Generation requests (including truncation retries)", None),
    ("prompt_tokens", "prompt_tokens", "Prompt tokens processed", None),
    ("completion_tokens", "generated_tokens", "Tokens generated", None),
    ("entities", "entities", "Grounded entities written", None),
    ("truncated_chunks", "truncated_chunks", "Chunks whose response stayed cut at max_tokens", None),
    (
        "ungrounded_dropped",
        "ungrounded_dropped",
        "Entities dropped because they were not in the source",
        None,
    ),
    ("elapsed_seconds", "duration_seconds", "Wall time of the run", None),
    ("generated_tokens_per_second", "generated_tokens_per_second", "Generation throughput", None),
    ("documents_per_second", "documents_per_second", "Document throughput", None),
    ("preparation_seconds", "preparation_seconds", "Reading, chunking, tokenizing and grammar building", None),
    ("engine_restarts", "engine_restarts", "Dead engines restarted during the run", None),
    ("poison_requests", "poison_requests", "Requests that killed a fresh engine again (their documents failed)", None),
)
# Measured by the engine side (summary["engine"]); absent on HTTP, where the server's engine is not ours.
_ENGINE_GAUGES = (
    ("occupancy", "engine_occupancy", "Mean over engine steps of running / min(max_num_seqs, unfinished requests)"),
    ("idle_share", "engine_idle_share", "Share of the engine's wall time without a step to run"),
    ("limited_steps", "engine_limited_steps", "Engine steps held back by KV-cache space or the token budget"),
)


def prometheus_text(report: dict[str, Any]) -> str:
    """The report's figures as Prometheus exposition text (prefix ``vllm_extract_``)."""
    summary = report["summary"]
    model = str(report.get("model", "")).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    lines: list[str] = []

    def metric(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        full = f"vllm_extract_{name}"
        lines.append(f"# HELP {full} {help_text}")
        lines.append(f"# TYPE {full} gauge")
        for labels, value in samples:
            lines.append(f"{full}{{{labels}}} {_number(value)}")

    base = f'model="{model}"'
    metric(
        "documents",
        "Documents written in this run, by status",
        [
            (f'{base},status="ok"', summary["ok"]),
            (f'{base},status="error"', summary["errors"]),
            (f'{base},status="skipped"', summary["skipped_done"]),
        ],
    )
    for key, name, help_text, _ in _GAUGES[1:]:
        metric(name, help_text, [(base, summary.get(key, 0))])
    engine = summary.get("engine") or {}
    for key, name, help_text in _ENGINE_GAUGES:
        if engine.get(key) is not None:
            metric(name, help_text, [(base, engine[key])])
    metric(
        "errors",
        "Document errors by kind",
        [(f'{base},kind="{kind}"', count) for kind, count in sorted(summary["errors_by_kind"].items())]
        or [(f'{base},kind="none"', 0)],
    )
    metric(
        "gpu_memory_alerts",
        "Memory threshold crossings during the run",
        [(base, report.get("gpu_memory_alerts", 0))],
    )
    metric("interrupted", "1 if the run was stopped by a signal", [(base, 1 if summary["interrupted"] else 0)])
    metric("last_run_timestamp_seconds", "When the run finished (Unix time)", [(base, _finished_unix(report))])
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    """A sample value, exact (``:g`` would print 12345678 as 1.23457e+07)."""
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return str(int(number)) if number.is_integer() else repr(number)


def _finished_unix(report: dict[str, Any]) -> float:
    """``finished_unix`` if present, else the report's ``finished_at`` (UTC, ISO 8601), else 0."""
    if report.get("finished_unix") is not None:
        return float(report["finished_unix"])
    try:
        return calendar.timegm(time.strptime(str(report["finished_at"]), "%Y-%m-%dT%H:%M:%SZ"))
    except (KeyError, ValueError):
        return 0


def write_metrics(path: Path, report: dict[str, Any]) -> None:
    atomic_write(path, prometheus_text(report).encode())
