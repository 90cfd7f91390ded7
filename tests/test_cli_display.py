"""RunDisplay (plain, quiet and live modes) and the rich tables, fed events by hand with a fake clock:
the events are the display's input (what the runner and the pipeline emit, in their order)."""

from __future__ import annotations

import io
import threading
import time

import pytest
from rich.console import Console, RenderableType

from vllm_extract.cli.display import (
    RunDisplay,
    format_duration,
    format_tokens,
    render_gpu_table,
    render_summary,
    summary_lines,
)
from vllm_extract.engine.gpu import GPUProcess, GPUStats
from vllm_extract.events import (
    ChunkDone,
    DocumentDone,
    EnginePhase,
    Event,
    MemoryReading,
    MemorySample,
    RunFinished,
    RunStarted,
)

SUMMARY: dict[str, object] = {
    "documents_ok": 2,
    "documents_error": 1,
    "documents_skipped": 1,
    "entities": 1234,
    "elapsed_seconds": 75.0,
    "tokens_per_second": 1068.0,
    "truncated": 0,
    "gpu_alerts": 1,
    "output": "out.jsonl",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=120), out


def to_text(renderable: RenderableType, *, styles: bool = False) -> str:
    console = Console(file=io.StringIO(), record=True, width=120, force_terminal=True)
    console.print(renderable)
    return console.export_text(styles=styles)


def feed(display: RunDisplay, clock: FakeClock, out: io.StringIO | None = None) -> list[str]:
    """A small run as the runner and the pipeline emit it; returns the output after each step when
    ``out`` is given. The ticker's job (a line every ``log_interval`` even without events) is done
    by calling ``tick``."""
    seen: list[str] = []

    def step(event: Event | None, advance: float = 0.0) -> None:
        clock.now += advance
        if event is None:
            display.tick()
        else:
            display(event)
        if out is not None:
            seen.append(out.getvalue())

    step(EnginePhase("loading", detail="tiny"))  # the runner, before the engine starts
    step(None, 29)  # the model loads: no events
    step(None, 1)
    step(RunStarted(documents_total=4, model="tiny", backend="direct", exact_tokens=True, documents_skipped=1), 10)
    step(EnginePhase("prefill", 900))  # the dispatcher, per document, until the first answer
    step(EnginePhase("prefill", 1_234_567))
    step(EnginePhase("generating"), 20)  # the first answer
    for n in range(4):
        step(ChunkDone(f"a#{n}", 20_000, retry=n == 3, prompt_tokens=300_000))
    step(DocumentDone("a", "ok", 3, 2), 10)
    step(DocumentDone("b", "error", 0, 2, error_kind="context_overflow", message="prompt too long"), 25)
    step(MemorySample((MemoryReading("host", 41.0, 100.0),), 0.9, False, 0))
    step(ChunkDone("c#0", 100, prompt_tokens=234_567))
    step(DocumentDone("c", "ok", 5, 1), 40)
    step(RunFinished(SUMMARY))
    return seen


def test_plain_mode_says_the_phase_then_prints_periodic_lines_errors_and_summary() -> None:
    console, out = plain_console()
    clock = FakeClock()
    display = RunDisplay(console, log_interval=30, clock=clock, tick_seconds=None)
    assert display.live is False  # not a terminal
    with display:
        seen = feed(display, clock, out)
    text = out.getvalue()
    assert "\x1b" not in text
    # Issue 19: the first line names the model being loaded, at once (not after log_interval).
    assert seen[0] == "[00:00:00] loading the model tiny (00:00:00)\n"
    assert seen[1] == seen[0]  # 29 s: nothing due yet
    lines = text.splitlines()
    assert lines[:6] == [
        "[00:00:00] loading the model tiny (00:00:00)",
        "[00:00:30] loading the model tiny (00:00:30)",  # no event came: the ticker's line
        "[00:00:40] waiting for the first answer: 900 prompt tokens in flight (00:00:00)",
        "[00:01:00] generating (the first answer came after 00:00:20)",
        "[00:01:35] error b (context_overflow): prompt too long",
        # tokens per chunk as chunks complete; rates over the 55 s since the first requests went out
        "[00:01:35] documents 3/4 (75.0%) eta 00:00:27 chunks 4 prompt 1.2M gen 80.0k tokens 1455 tok/s errors 1",
    ]
    assert lines[6] == (
        "[00:02:15] documents 4/4 (100.0%) eta 00:00:00 chunks 5 prompt 1.4M gen 80.1k tokens 843 tok/s "
        "errors 1 | host 41% mem"
    )
    assert lines[7] == "run summary"
    assert "  documents_ok: 2" in lines
    assert "  elapsed_seconds: 75.0 s (00:01:15)" in lines
    assert "  output: out.jsonl" in lines
    assert display.snapshot()["phase"] == "generating"


def test_documents_done_before_the_first_answer_do_not_show_zero_tok_s() -> None:
    """Bad inputs and reused documents are done before anything is generated: the line counted
    them and said `gen 0 tokens 0 tok/s` while the run still waited for its first answer. It
    says it is waiting now."""
    console, out = plain_console()
    clock = FakeClock()
    with RunDisplay(console, log_interval=5, clock=clock, tick_seconds=None) as display:
        display(RunStarted(documents_total=4, model="tiny", backend="direct", exact_tokens=True))
        display(EnginePhase("prefill", 900))
        display(DocumentDone("bad", "error", 0, 0, error_kind="malformed_json", message="not JSON"))
        clock.now += 5
        display.tick()
    line = out.getvalue().splitlines()[-1]
    assert line == (
        "[00:00:05] documents 1/4 (25.0%) errors 1, waiting for the first answer: 900 prompt tokens in flight "
        "(00:00:05)"
    )


def test_quiet_mode_prints_only_errors_and_summary() -> None:
    console, out = plain_console()
    clock = FakeClock()
    with RunDisplay(console, quiet=True, log_interval=30, clock=clock) as display:
        feed(display, clock)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[00:01:35] error b (context_overflow): prompt too long"
    assert lines[1] == "run summary"
    assert len(lines) == 2 + len(SUMMARY)


def test_the_ticker_prints_while_no_event_comes() -> None:
    """A model that loads for minutes sends no events: the plain lines go on all the same."""
    console, out = plain_console()
    display = RunDisplay(console, log_interval=0.05, tick_seconds=0.01)
    with display:
        display(EnginePhase("loading", detail="acme/big-model"))
        deadline = time.monotonic() + 10
        while out.getvalue().count("loading the model acme/big-model") < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert out.getvalue().count("loading the model acme/big-model") >= 3
    assert display._ticker is None  # stopped with the display
    quiet = RunDisplay(console, quiet=True, tick_seconds=0.01)
    with quiet:
        assert quiet._ticker is None  # quiet mode: errors and the summary only


def test_no_line_of_zeros_before_the_first_phase() -> None:
    """Issue 19: under cron the first line said `documents 0 chunks 0 ... 0 tok/s` while the model
    loaded. Before the first phase or the run starts, a due line is not printed; the first line is
    the loading one."""
    console, out = plain_console()
    clock = FakeClock()
    display = RunDisplay(console, log_interval=5, clock=clock, tick_seconds=None)
    with display:
        clock.now += 6
        display.tick()
        assert out.getvalue() == ""
        display(EnginePhase("loading", detail="tiny"))
        clock.now += 5
        display.tick()
    assert out.getvalue().splitlines() == [
        "[00:00:06] loading the model tiny (00:00:00)",
        "[00:00:11] loading the model tiny (00:00:05)",
    ]


def test_summary_shows_engine_occupancy_idle_share_and_restarts_only_when_some() -> None:
    engine = {"occupancy": 0.8333, "occupancy_all_steps": 0.7, "steps": 1234, "limited_steps": 3,
              "idle_share": 0.021, "engine_restarts": 1, "engine_pids": [11, 12]}  # fmt: skip
    summary = {"documents": 7, "engine": engine, "engine_restarts": 1, "poison_requests": 0}
    lines = summary_lines(summary)
    assert lines == ["documents: 7", "engine: occupancy 83%, idle 2%, 1,234 steps", "engine_restarts: 1"]
    calm = summary_lines({"engine": engine | {"replicas": 2}, "engine_restarts": 0, "poison_requests": 0})
    assert calm == ["engine: occupancy 83%, idle 2%, 1,234 steps, 2 replicas"]
    assert summary_lines({"engine": {"engine_restarts": 0}}) == ["engine: -"]  # a server: nothing measured
    table = to_text(render_summary(summary))
    assert "occupancy 83%, idle 2%" in table and "engine restarts" in table and "poison" not in table


def test_quiet_wins_over_live() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    assert RunDisplay(console, quiet=True).live is False
    assert RunDisplay(console).live is True
    assert RunDisplay(console, live=False).live is False


def test_live_mode_panel_shows_progress_and_memory_over_threshold() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    clock = FakeClock()
    display = RunDisplay(console, clock=clock)
    display.start()
    try:
        display(RunStarted(documents_total=10, model="tiny", backend="vllm", exact_tokens=False))
        display(EnginePhase("prefill", 50_000))
        display(EnginePhase("generating"))
        clock.now += 20
        for n in range(12):
            display(ChunkDone(f"d#{n}", 1_000 if n < 4 else 0, prompt_tokens=50_000 // 12))
        display(DocumentDone("d1", "ok", 4, 1))
        display(DocumentDone("d2", "error", 0, 1, error_kind="bad_json", message="unparseable"))
        gpu0 = MemoryReading("GPU 0", 44.0, 46.0, 88.0)
        display(MemorySample((gpu0,), 0.9, True, 1))
        panel = display.render()
        text = to_text(panel)
        styled = to_text(panel, styles=True)
    finally:
        display(RunFinished(SUMMARY))
    assert "vllm-extract" in text
    assert "2/10 (20.0%)" in text and "12 done" in text
    assert "prompt 50.0k" in text and "generated 4.0k" in text and "200 tok/s" in text
    assert "GPU 0" in text and "95.7% (44.0/46.0 GB)" in text and "over threshold 90%" in text
    assert "memory alerts" in text
    assert "\x1b[1;31m" in styled  # over threshold -> warning style
    written = out.getvalue()
    assert "d2" in written and "unparseable" in written
    assert "run summary" in written and "out.jsonl" in written
    assert display._live is None


def test_live_panel_says_the_phase_from_the_moment_the_model_loads() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    clock = FakeClock()
    display = RunDisplay(console, clock=clock)
    display.start()
    try:
        display(EnginePhase("loading", detail="tiny"))
        assert display._live is not None  # the panel is up while the engine loads
        clock.now += 65
        assert "loading the model tiny (00:01:05)" in to_text(display.render())
        display(RunStarted(documents_total=7, model="tiny", backend="direct", exact_tokens=True))
        display(EnginePhase("prefill", 8_978))
        clock.now += 40
        text = to_text(display.render())
        assert "waiting for the first answer: 9.0k prompt tokens in flight (00:00:40)" in text
        display(EnginePhase("generating"))
        display(ChunkDone("a#0", 256, retry=True, prompt_tokens=2_000))
        text = to_text(display.render())
        assert "generating" in text and "1 done (1 retried)" in text and "generated 256" in text
    finally:
        display.stop()
    # With --verbose the engine's output shares the terminal: a plain line, the panel later.
    out = io.StringIO()
    verbose = RunDisplay(Console(file=out, force_terminal=True, width=120), show_loading=False, clock=clock)
    verbose.start()
    try:
        verbose(EnginePhase("loading", detail="tiny"))
        assert verbose._live is None and "loading the model tiny" in out.getvalue()
        verbose(RunStarted(documents_total=7, model="tiny", backend="direct", exact_tokens=True))
        assert verbose._live is not None
    finally:
        verbose.stop()


def test_memory_samples_from_another_thread() -> None:
    console, _ = plain_console()
    clock = FakeClock()
    display = RunDisplay(console, log_interval=1e9, clock=clock)

    def sampler() -> None:
        for i in range(200):
            display(MemorySample((MemoryReading("host", i % 10, 10.0),), 0.9, False, 0))

    thread = threading.Thread(target=sampler)
    thread.start()
    for i in range(200):
        display(DocumentDone(f"d{i}", "ok", 1, 1))
    thread.join()
    assert display.snapshot()["documents_done"] == 200
    assert "host" in display.status_line()


def test_render_summary_table() -> None:
    text = to_text(render_summary(SUMMARY))
    assert "run summary" in text and "documents ok" in text and "1,234" in text and "00:01:15" in text
    assert summary_lines({"ratio": 0.5, "flags": ["a", "b"], "none": None, "on": True}) == [
        "ratio: 0.50",
        "flags: a, b",
        "none: -",
        "on: yes",
    ]


def test_render_gpu_table() -> None:
    stats = [
        GPUStats(0, "NVIDIA L40S", "GPU-a", 45.31, 46.0, 0.69, 98.5, 97.0, 61.0, 210.5, 350.0,
                 [GPUProcess(4242, "python", 44.0), GPUProcess(7, "x", None)]),
        GPUStats(1, "NVIDIA A10G", "GPU-b", 0.5, 23.0, 22.5, 0.5 / 23 * 100),
    ]  # fmt: skip
    text = to_text(render_gpu_table(stats, threshold=0.9))
    assert "NVIDIA L40S" in text and "NVIDIA A10G" in text
    assert "98.5%" in text and "2.2%" in text
    assert "45.3/46.0 GB" in text and "97%" in text and "61°C" in text and "210 W / 350 W" in text
    assert "4242 python 44.0 GB, 7 x" in text


@pytest.mark.parametrize(("count", "expected"), [(999, "999"), (80_100, "80.1k"), (1_234_567, "1.2M"), (3e9, "3.0B")])
def test_format_tokens(count: float, expected: str) -> None:
    assert format_tokens(count) == expected


def test_format_duration() -> None:
    assert format_duration(312) == "00:05:12"
    assert format_duration(100 * 3600 + 61.9) == "100:01:01"
    assert format_duration(None) == "--:--:--"


def test_chunks_and_tokens_advance_as_responses_arrive_before_any_document_is_done() -> None:
    """Issue 19: the token fields stayed at 0 until a batch ended; now each chunk counts as it
    completes (one final response per chunk: a retried one counts once)."""
    console, _ = plain_console()
    clock = FakeClock()
    display = RunDisplay(console, log_interval=30, clock=clock, tick_seconds=None)
    display(RunStarted(documents_total=20, model="m", backend="http", exact_tokens=True))
    display(EnginePhase("prefill", 100))
    clock.now += 10
    display(EnginePhase("generating"))
    for n in range(7):
        display(ChunkDone(f"d#{n}", 10, retry=n == 0, prompt_tokens=100))
    assert display.chunks_done == 7 and display.documents_done == 0
    line = display.status_line()
    assert "chunks 7 prompt 700 gen 70 tokens 7 tok/s" in line and line.startswith("[00:00:10] documents 0/20")
