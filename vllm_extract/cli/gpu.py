"""`vllm-extract gpu-status`."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from rich.console import Console

from ..exceptions import VLLMClientError
from ._app import _fail, app
from .exit_codes import ExitCode


@app.command("gpu-status")
def gpu_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    watch: Annotated[float | None, typer.Option(help="Refresh every SECONDS until Ctrl-C.")] = None,
) -> None:
    """Show every GPU: memory, utilization, temperature, power, processes.

    Exit 0 when GPUs are readable; 3 with a one-line reason when there is no GPU or driver.
    With --json the answer is always one JSON document on stdout: {"gpus": [...]} or, when the
    GPUs cannot be read, {"gpus": [], "error": {"kind": ..., "message": ...}} (exit code as above).
    Example: vllm-extract gpu-status --json
    """
    from ..engine.gpu.devices import GPUMonitor
    from .display import render_gpu_table

    try:
        monitor = GPUMonitor()
        stats = monitor.get_all_stats()
        if as_json:
            _print_json({"gpus": [s.to_dict() for s in stats]})
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
        raise typer.Exit(ExitCode.OK) from None
    except VLLMClientError as exc:
        if as_json:
            _print_json({"gpus": [], "error": {"kind": type(exc).__name__, "message": str(exc)}})
        raise _fail(exc) from None


def _print_json(document: dict[str, object]) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
