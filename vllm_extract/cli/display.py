"""Rendering a run for people: a live rich panel on terminals, plain periodic lines elsewhere.

``RunDisplay`` subscribes to the run's events (``vllm_extract.events``) and keeps counters:
the phase (loading the model, waiting for the first answer, generating) and how long it has
lasted, documents, chunks, tokens and tokens/s (per chunk, as each completes), errors and the
latest memory readings. On a terminal it shows a ``rich.live.Live`` panel from the moment the
model starts loading; in cron jobs and pipes it prints a line at once when the phase changes (the
first names the model being loaded) and one plain line every ``log_interval`` seconds (no ANSI),
from a ticker thread, so a long model load is not silent. Errors are printed as they happen, and
the run summary at the end (the engine's occupancy and idle share, restarts when there were any).
``render_gpu_table`` renders ``GPUStats`` for ``gpu-status``. All rich rendering lives here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..engine.gpu.devices import GPUStats
from ..events import (
    ChunkDone,
    DocumentDone,
    EnginePhase,
    Event,
    MemoryReading,
    MemorySample,
    RunFinished,
    RunStarted,
)

__all__ = [
    "RunDisplay",
    "format_duration",
    "format_tokens",
    "render_gpu_table",
    "render_summary",
    "summary_lines",
]

MIN_RATE_SECONDS = 1.0
TICK_SECONDS = 1.0  # how often the plain-lines ticker checks whether a line is due


def format_tokens(count: float) -> str:
    """1234567 -> '1.2M', 80100 -> '80.1k', 999 -> '999'."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= limit:
            return f"{count / limit:.1f}{suffix}"
    return f"{count:.0f}"


def format_duration(seconds: float | None) -> str:
    """Seconds as HH:MM:SS ('--:--:--' when unknown)."""
    if seconds is None or seconds < 0 or seconds != seconds:
        return "--:--:--"
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _bar(fraction: float, width: int = 20) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "░" * (width - filled)


def _memory_style(fraction: float, threshold: float | None) -> str:
    if threshold is None or fraction <= threshold:
        return "green"
    return "bold red" if fraction >= (1 + threshold) / 2 else "yellow"


def _format_value(key: str, value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if "seconds" in key or key == "elapsed":
            return f"{value:.1f} s ({format_duration(value)})"
        return f"{value:,.2f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_format_value(str(k), v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple | set):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def _percent(value: object) -> str:
    return f"{value * 100:.0f}%" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def _engine_text(engine: Mapping[str, object]) -> str:
    """The engine's part of a run summary in one line: occupancy (the share of the engine's
    sequence slots in use, over the steps the feed could fill), idle share (of the run's wall time
    the engine had nothing to run) and steps; '-' for a server (nothing measured)."""
    if not any(key in engine for key in ("occupancy", "idle_share", "steps")):
        return "-"
    text = f"occupancy {_percent(engine.get('occupancy'))}, idle {_percent(engine.get('idle_share'))}"
    steps = engine.get("steps")
    if isinstance(steps, int):
        text += f", {steps:,} steps"
    replicas = engine.get("replicas")
    if isinstance(replicas, int) and replicas > 1:
        text += f", {replicas} replicas"
    return text


def _summary_items(summary: Mapping[str, object]) -> list[tuple[str, str]]:
    """(key, text) pairs of a summary: every key as it is, except ``engine`` (its occupancy and idle
    share in one line, ``_engine_text``) and restart counts that are 0 (left out)."""
    items = []
    for key, value in summary.items():
        if key in ("engine_restarts", "poison_requests") and not value:
            continue
        if key == "engine" and isinstance(value, Mapping):
            items.append((key, _engine_text(value)))
        else:
            items.append((key, _format_value(key, value)))
    return items


def summary_lines(summary: Mapping[str, object]) -> list[str]:
    """The summary as plain ``key: value`` lines (logs, pipes)."""
    return [f"{key}: {text}" for key, text in _summary_items(summary)]


def render_summary(summary: Mapping[str, object]) -> Table:
    """The summary as a two-column rich table, whatever keys it holds."""
    table = Table(title="run summary", show_header=False, title_justify="left")
    table.add_column("item", style="bold")
    table.add_column("value")
    for key, text in _summary_items(summary):
        value = summary[key]
        style = "red" if (("error" in key or key in ("engine_restarts", "poison_requests")) and value) else ""
        table.add_row(key.replace("_", " "), Text(text, style=style))
    return table


def render_gpu_table(stats: list[GPUStats], threshold: float | None = None) -> Table:
    """One row per GPU: memory bar, utilization, temperature, power and the processes holding memory."""
    table = Table(title="GPUs", title_justify="left")
    for name in ("GPU", "Name", "Memory", "Util", "Temp", "Power", "Processes"):
        table.add_column(name, justify="right" if name in ("GPU", "Util", "Temp") else "left")
    for s in stats:
        fraction = s.memory_utilization_percent / 100
        memory = Text(
            f"{_bar(fraction, 10)} {s.memory_used_gb:.1f}/{s.memory_total_gb:.1f} GB "
            f"{s.memory_utilization_percent:.1f}%",
            style=_memory_style(fraction, threshold),
        )
        util = f"{s.gpu_utilization_percent:.0f}%" if s.gpu_utilization_percent is not None else "-"
        temp = f"{s.temperature_c:.0f}°C" if s.temperature_c is not None else "-"
        power = f"{s.power_w:.0f} W" if s.power_w is not None else "-"
        if s.power_limit_w is not None:
            power += f" / {s.power_limit_w:.0f} W"
        procs = ", ".join(
            f"{p.pid} {p.name}" + (f" {p.used_gb:.1f} GB" if p.used_gb is not None else "") for p in s.processes
        )
        table.add_row(str(s.gpu_id), s.name, memory, util, temp, power, procs or "-")
    return table


class RunDisplay:
    """Event subscriber rendering a run: ``with RunDisplay(console) as show: run(on_event=show)``.

    ``live`` (default: the console is a terminal) shows the panel; otherwise plain lines every
    ``log_interval`` seconds. ``quiet``: only errors and the summary. ``show_loading``: draw the
    panel while the model loads (the CLI passes False with ``--verbose``, when the engine's own
    output goes to the terminal: the panel then appears once the run starts). ``tick_seconds``: how
    often the ticker thread of plain mode checks for a due line (None: no thread; ``tick()`` does
    it). ``clock`` gives seconds (monotonic).
    """

    def __init__(
        self,
        console: Console,
        *,
        live: bool | None = None,
        quiet: bool = False,
        log_interval: float = 30.0,
        show_loading: bool = True,
        tick_seconds: float | None = TICK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.quiet = quiet
        self.live = (console.is_terminal if live is None else live) and not quiet
        self.log_interval = log_interval
        self.show_loading = show_loading
        self.tick_seconds = tick_seconds
        self._clock = clock
        self._lock = threading.RLock()
        self._live: Live | None = None
        self._ticker: threading.Thread | None = None
        self._stopped = threading.Event()
        self._t0: float | None = None
        self._last_log = 0.0
        self.model = ""
        self.backend = ""
        self.phase = ""  # "", "loading", "prefill", "generating"
        self.phase_started: float | None = None
        self.prefill_tokens = 0  # prompt tokens sent before the first answer
        self.generation_started: float | None = None  # the first requests were sent
        self.documents_total: int | None = None
        self.documents_skipped = 0
        self.documents_processed = 0
        self.errors = 0
        self.entities = 0
        self.chunks_done = 0
        self.retried_chunks = 0
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.readings: dict[str, MemoryReading] = {}
        self.threshold: float | None = None
        self.alerts = 0

    # lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Arm the display (its clock starts) and, in plain mode, the ticker. The live panel appears
        when the model starts loading (``EnginePhase("loading")``) or the run starts (RunStarted)."""
        self._stopped.clear()
        with self._lock:
            if self._t0 is None:
                self._t0 = self._last_log = self._clock()
            wants_ticker = not self.live and not self.quiet and self.tick_seconds is not None
            if not wants_ticker or self._ticker is not None:
                return
            self._ticker = threading.Thread(target=self._tick_loop, name="vllm-extract-display", daemon=True)
            ticker = self._ticker
        ticker.start()

    def _tick_loop(self) -> None:
        assert self.tick_seconds is not None
        while not self._stopped.wait(self.tick_seconds):
            self.tick()

    def tick(self) -> None:
        """Print a plain status line if one is due (the ticker calls this; a line is due every
        ``log_interval`` seconds, whether or not events arrived, once the first phase or the run has
        started: before that a line would only say zeros)."""
        with self._lock:
            if self.live or self.quiet or self._t0 is None or self._clock() - self._last_log < self.log_interval:
                return
            if not self.phase and self.documents_total is None:
                return
            self._last_log = self._clock()
            line = self.status_line()
        self._print([line])

    def _start_live(self) -> None:
        with self._lock:
            if not self.live or self._live is not None or self._stopped.is_set():
                return
            self._live = Live(
                console=self.console,
                get_renderable=self.render,
                refresh_per_second=4,
                transient=False,
            )
            live = self._live
        live.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            live, self._live = self._live, None
            ticker, self._ticker = self._ticker, None
        if live is not None:
            live.stop()  # never while holding self._lock: Live's refresh thread calls render()
        if ticker is not None and ticker is not threading.current_thread():
            ticker.join()

    def __enter__(self) -> RunDisplay:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # events --------------------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        with self._lock:
            output = self._apply(event)
        if isinstance(event, RunStarted) or (
            isinstance(event, EnginePhase) and event.phase == "loading" and self.show_loading
        ):
            self._start_live()
        elif isinstance(event, RunFinished):
            self.stop()
        self._print(output)

    def _print(self, output: list[RenderableType]) -> None:
        for item in output:
            if isinstance(item, str):
                self.console.print(item, markup=False, highlight=False, soft_wrap=True)
            else:
                self.console.print(item)

    def _apply(self, event: Event) -> list[RenderableType]:
        now = self._clock()
        if self._t0 is None:
            self._t0 = self._last_log = now
        output: list[RenderableType] = []
        if isinstance(event, EnginePhase):
            output.extend(self._phase(event, now))
        elif isinstance(event, RunStarted):
            self.documents_total = event.documents_total
            self.documents_skipped = event.documents_skipped
            self.model, self.backend = event.model, event.backend
        elif isinstance(event, ChunkDone):
            self.chunks_done += event.chunk_done  # a chunk is done when all its questions are answered
            self.retried_chunks += event.retry
            self.prompt_tokens += event.prompt_tokens
            self.generated_tokens += event.completion_tokens
        elif isinstance(event, DocumentDone):
            self.documents_processed += 1
            self.entities += event.entities
            if event.status == "error":
                self.errors += 1
                output.append(self._error_line(event))
        elif isinstance(event, MemorySample):
            self.readings.update((r.device, r) for r in event.readings)
            self.threshold = event.threshold
            self.alerts = event.alerts
        elif isinstance(event, RunFinished):
            if self.quiet or not self.live:
                output.append("\n".join(["run summary", *("  " + line for line in summary_lines(event.summary))]))
            else:
                output.append(render_summary(event.summary))
            return output
        if not self.live and not self.quiet and now - self._last_log >= self.log_interval:
            self._last_log = now
            output.append(self.status_line())
        return output

    def _phase(self, event: EnginePhase, now: float) -> list[RenderableType]:
        """Apply a phase event; a plain line at once when the phase changes (not in quiet mode)."""
        if event.phase == "prefill":
            self.prefill_tokens = event.prompt_tokens
            if self.generation_started is None:
                self.generation_started = now
        elif event.phase == "loading" and event.detail:
            self.model = event.detail
        if event.phase == self.phase:
            return []
        before = self.phase_started
        self.phase, self.phase_started = event.phase, now
        if self.quiet or (self.live and (self.show_loading or event.phase != "loading")):
            return []
        self._last_log = now
        if event.phase == "generating":
            waited = f" (the first answer came after {format_duration(now - before)})" if before is not None else ""
            return [f"[{format_duration(self._elapsed())}] generating{waited}"]
        return [self.status_line()]

    def _error_line(self, event: DocumentDone) -> RenderableType:
        kind = event.error_kind or "error"
        message = event.message or ""
        if self.live:
            return Text.assemble(("error ", "bold red"), (event.doc_id, "bold"), f" ({kind}): {message}")
        return f"[{format_duration(self._elapsed())}] error {event.doc_id} ({kind}): {message}"

    # numbers -------------------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self._clock() - self._t0 if self._t0 is not None else 0.0

    @property
    def documents_done(self) -> int:
        return self.documents_skipped + self.documents_processed

    def _rates(self) -> tuple[float, float, float | None]:
        """(elapsed seconds, generated tokens/s, ETA seconds or None). Rates count from the moment
        the first requests were sent: the model's loading time is not generation time."""
        elapsed = self._elapsed()
        since = self.generation_started if self.generation_started is not None else self._t0
        generating = self._clock() - since if since is not None else 0.0
        measurable = generating >= MIN_RATE_SECONDS  # rates over a few milliseconds are noise
        tok_s = self.generated_tokens / generating if measurable else 0.0
        eta = None
        if self.documents_total is not None and self.documents_processed and measurable:
            remaining = max(self.documents_total - self.documents_done, 0)
            eta = remaining / (self.documents_processed / generating)
        return elapsed, tok_s, eta

    def _phase_text(self) -> str | None:
        """What the run is doing, for the first two phases: ``loading the model tiny (00:01:05)``,
        ``waiting for the first answer: 9.0k prompt tokens in flight (00:00:40)``; None after."""
        since = format_duration(self._clock() - self.phase_started) if self.phase_started is not None else ""
        if self.phase == "loading":
            return f"loading the model {self.model} ({since})" if self.model else f"loading the model ({since})"
        if self.phase == "prefill":
            tokens = format_tokens(self.prefill_tokens)
            return f"waiting for the first answer: {tokens} prompt tokens in flight ({since})"
        return None

    def _documents_text(self) -> str:
        if self.documents_total is None:
            return f"{self.documents_done}"
        percent = self.documents_done / self.documents_total * 100 if self.documents_total else 100.0
        return f"{self.documents_done}/{self.documents_total} ({percent:.1f}%)"

    def _over(self, reading: MemoryReading) -> bool:
        return self.threshold is not None and reading.fraction > self.threshold

    def status_line(self) -> str:
        """One plain progress line: ``[00:01:05] loading the model tiny (00:01:05)``, ``[00:02:10]
        waiting for the first answer: 9.0k prompt tokens in flight (00:00:40) | host 41% mem``, or
        ``[00:05:12] documents 120/400 (30.0%) eta ... chunks 130 prompt ... gen ... tokens ...
        tok/s errors 0 | host 41% mem``."""
        with self._lock:
            elapsed, tok_s, eta = self._rates()
            phase = self._phase_text()
            if phase is not None and not self.documents_processed:
                parts = [f"[{format_duration(elapsed)}] {phase}"]
            else:
                parts = [f"[{format_duration(elapsed)}] documents {self._documents_text()}"]
                if phase is not None and self.phase == "prefill":  # only reused or bad inputs done yet
                    parts.append(f"errors {self.errors}, {phase}")  # no rate or eta before any answer
                else:
                    if eta is not None:
                        parts.append(f"eta {format_duration(eta)}")
                    parts.append(
                        f"chunks {self.chunks_done} prompt {format_tokens(self.prompt_tokens)} "
                        f"gen {format_tokens(self.generated_tokens)} tokens {tok_s:.0f} tok/s errors {self.errors}"
                    )
            memory = []
            for r in self.readings.values():
                text = f"{r.device} {r.fraction * 100:.0f}% mem"
                if r.utilization_percent is not None:
                    text += f" {r.utilization_percent:.0f}% util"
                if self._over(r) and self.threshold is not None:
                    text += f" OVER {self.threshold * 100:.0f}%"
                memory.append(text)
            if self.alerts:
                memory.append(f"alerts {self.alerts}")
            line = " ".join(parts)
            return f"{line} | {', '.join(memory)}" if memory else line

    def render(self) -> Panel:
        """The live panel (also usable to render the current state anywhere)."""
        with self._lock:
            elapsed, tok_s, eta = self._rates()
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold", no_wrap=True)
            grid.add_column()
            if self.model:
                grid.add_row("model", f"{self.model} ({self.backend})" if self.backend else self.model)
            phase = self._phase_text()
            if phase is not None:
                grid.add_row("now", Text(phase, style="yellow"))
            elif self.phase == "generating":
                grid.add_row("now", "generating")
            fraction = self.documents_done / self.documents_total if self.documents_total else 0.0
            docs = self._documents_text()
            if self.documents_skipped:
                docs += f", {self.documents_skipped} skipped (already done)"
            grid.add_row("documents", Text(f"{_bar(fraction)} {docs}" if self.documents_total else docs))
            retried = f" ({self.retried_chunks} retried)" if self.retried_chunks else ""
            grid.add_row("chunks", f"{self.chunks_done:,} done{retried}  entities {self.entities:,}")
            grid.add_row(
                "tokens",
                f"prompt {format_tokens(self.prompt_tokens)}  generated "
                f"{format_tokens(self.generated_tokens)}  {tok_s:,.0f} tok/s",
            )
            grid.add_row("time", f"elapsed {format_duration(elapsed)}  eta {format_duration(eta)}")
            grid.add_row("errors", Text(str(self.errors), style="bold red" if self.errors else "green"))
            for r in self.readings.values():
                text = f"{_bar(r.fraction)} {r.fraction * 100:.1f}% ({r.used_gb:.1f}/{r.total_gb:.1f} GB)"
                if r.utilization_percent is not None:
                    text += f"  {r.utilization_percent:.0f}% util"
                if self._over(r) and self.threshold is not None:
                    text += f"  over threshold {self.threshold * 100:.0f}%"
                grid.add_row(r.device, Text(text, style=_memory_style(r.fraction, self.threshold)))
            if self.threshold is not None:
                grid.add_row("memory alerts", Text(str(self.alerts), style="yellow" if self.alerts else ""))
            return Panel(grid, title="vllm-extract", title_align="left")

    def snapshot(self) -> dict[str, Any]:
        """The counters as a dict (for tests and run reports)."""
        with self._lock:
            elapsed, tok_s, eta = self._rates()
            return {
                "phase": self.phase,
                "documents_done": self.documents_done,
                "documents_total": self.documents_total,
                "errors": self.errors,
                "chunks_done": self.chunks_done,
                "prompt_tokens": self.prompt_tokens,
                "generated_tokens": self.generated_tokens,
                "elapsed_seconds": elapsed,
                "tokens_per_second": tok_s,
                "eta_seconds": eta,
                "alerts": self.alerts,
            }
