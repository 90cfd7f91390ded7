"""RunDisplay (plain, quiet and live modes) and the rich tables, fed events with a fake clock."""

from __future__ import annotations

import io
import threading

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
    BatchDone,
    ChunkDone,
    DocumentDone,
    Event,
    MemoryReading,
    MemorySample,
    RunFinished,
    RunStarted,
    WindowStarted,
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
    """A small run; returns the output after each step when ``out`` is given."""
    seen: list[str] = []

    def step(event: Event, advance: float = 0.0) -> None:
        clock.now += advance
        display(event)
        if out is not None:
            seen.append(out.getvalue())

    step(RunStarted(documents_total=4, model="tiny", backend="vllm", exact_tokens=True, documents_skipped=1))
    step(WindowStarted(index=0, documents=3, chunks=5, prompt_tokens=9000))
    for n in range(4):
        step(ChunkDone(f"a#{n}", 100))
    step(BatchDone(requests=5, prompt_tokens=1_234_567, completion_tokens=80_100, seconds=9.0), 10)
    step(DocumentDone("a", "ok", 3, 2))
    step(DocumentDone("b", "error", 0, 2, error_kind="context_overflow", message="prompt too long"), 25)
    step(MemorySample((MemoryReading("host", 41.0, 100.0),), 0.9, False, 0))
    step(ChunkDone("c#0", 100))
    step(DocumentDone("c", "ok", 5, 1), 40)
    step(RunFinished(SUMMARY))
    return seen


def test_plain_mode_prints_periodic_lines_errors_and_summary() -> None:
    console, out = plain_console()
    clock = FakeClock()
    display = RunDisplay(console, log_interval=30, clock=clock)
    assert display.live is False  # not a terminal
    with display:
        seen = feed(display, clock, out)
    text = out.getvalue()
    assert "\x1b" not in text
    assert seen[7] == ""  # 10 s in: nothing yet (log_interval 30 s)
    lines = text.splitlines()
    progress = [line for line in lines if " documents " in line]
    assert progress == [
        "[00:00:35] documents 3/4 (75.0%) eta 00:00:17 chunks 4/5 prompt 1.2M gen 80.1k tokens 2289 tok/s errors 1",
        "[00:01:15] documents 4/4 (100.0%) eta 00:00:00 chunks 5/5 prompt 1.2M gen 80.1k tokens "
        "1068 tok/s errors 1 | host 41% mem",
    ]
    assert lines.count("[00:00:35] error b (context_overflow): prompt too long") == 1
    assert lines.index("run summary") > lines.index(progress[-1])
    assert "  documents_ok: 2" in lines
    assert "  elapsed_seconds: 75.0 s (00:01:15)" in lines
    assert "  output: out.jsonl" in lines


def test_quiet_mode_prints_only_errors_and_summary() -> None:
    console, out = plain_console()
    clock = FakeClock()
    with RunDisplay(console, quiet=True, log_interval=30, clock=clock) as display:
        feed(display, clock)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[00:00:35] error b (context_overflow): prompt too long"
    assert lines[1] == "run summary"
    assert len(lines) == 2 + len(SUMMARY)


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
        display(WindowStarted(index=0, documents=10, chunks=12, prompt_tokens=50_000))
        clock.now += 20
        display(BatchDone(requests=12, prompt_tokens=50_000, completion_tokens=4_000, seconds=19.0))
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
    assert "2/10 (20.0%)" in text
    assert "prompt 50.0k" in text and "generated 4.0k" in text and "200 tok/s" in text
    assert "GPU 0" in text and "95.7% (44.0/46.0 GB)" in text and "over threshold 90%" in text
    assert "memory alerts" in text
    assert "\x1b[1;31m" in styled  # over threshold -> warning style
    written = out.getvalue()
    assert "d2" in written and "unparseable" in written
    assert "run summary" in written and "out.jsonl" in written
    assert display._live is None


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


def test_chunks_advance_as_responses_arrive_before_any_document_is_done() -> None:
    """Against a server the panel moved only per window (issue 10); now each response counts."""
    console, _ = plain_console()
    display = RunDisplay(console, log_interval=30, clock=FakeClock())
    display(RunStarted(documents_total=20, model="m", backend="http", exact_tokens=True))
    display(WindowStarted(index=0, documents=20, chunks=20, prompt_tokens=100))
    for n in range(7):
        display(ChunkDone(f"d#{n}", 10))
    display(ChunkDone("d#0", 10, retry=True))  # a truncation retry is not a new chunk
    assert display.chunks_done == 7 and display.documents_done == 0
    assert "chunks 7/20" in display.status_line()
