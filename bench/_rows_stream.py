"""Bench row 12: the streaming run against 0.1's window design, on one engine, in one session.

    .venv/bin/python bench/run_all.py --rows 12            # inside the whole bench
    .venv/bin/python bench/_rows_stream.py --docs 160      # alone

Both designs drive the same engine (one `DirectVLLMClient`: the engine process and its
deterministic engine loop) over the same corpus of mixed lengths (short news items and notes,
long contracts and opinions: bench/corpus.py), at the default `max_num_seqs` (256), with the same
budgets; the engine's prefix cache is emptied before each pass.

- **window** (0.1's design, reproduced with the library's own pieces): read, convert, chunk and
  tokenize documents until a window holds `window_chunks` (256) chunks, build their grammars, send
  the window and wait for its last answer, send the cut answers again as a second, smaller batch
  and wait, then align, validate and write every record of the window with one fsync; only then
  read the next window.
- **stream** (`run_job`): preparation runs ahead in a thread; the engine is fed continuously;
  retries go into the same stream; each record is written as soon as it is next in order, fsynced
  in small groups.

Reported per design: engine occupancy (mean over engine steps of running / min(max_num_seqs, the
run's unfinished requests); steps held back by KV-cache space or the per-step token budget counted
apart), the engine's idle share of the wall time (time without a step to run), documents/s, and
the age of the newest durable record when a SIGKILL would land at 30%, 60% and 90% of the run (from
the times of each fsync during the run: what a kill at that moment leaves on disk).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # sets the environment before vLLM loads
from _common import Bench, Row

from vllm_extract import Document, OutputWriter, RunOptions, run_job
from vllm_extract.clients.base import VLLMClientInterface
from vllm_extract.clients.followups import looping
from vllm_extract.clients.stream import StreamItem
from vllm_extract.run.feed import DocWork
from vllm_extract.run.pipeline import ExtractionPipeline
from vllm_extract.run.plan import RunPlan

WINDOW_CHUNKS = 256  # 0.1's default window
KILL_POINTS = (0.3, 0.6, 0.9)


class _TimedWriter(OutputWriter):
    """An OutputWriter that remembers when each fsync made records durable."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, overwrite=True)
        self.durable_at: list[float] = []

    def sync(self) -> None:
        unsynced = self._unsynced
        super().sync()
        if unsynced:
            self.durable_at.append(time.perf_counter())


def _ages(started: float, finished: float, durable_at: Sequence[float]) -> list[float | None]:
    """Seconds since the newest durable record at each kill point (None: nothing durable yet)."""
    ages: list[float | None] = []
    for point in KILL_POINTS:
        moment = started + point * (finished - started)
        done = [t for t in durable_at if t <= moment]
        ages.append(round(moment - done[-1], 2) if done else None)
    return ages


async def _window_run(client: VLLMClientInterface, plan: RunPlan, docs: Sequence[Document], out: Path) -> Any:
    """0.1's window design on today's engine (see the module docstring)."""
    pipeline = ExtractionPipeline(client, plan)
    writer = _TimedWriter(out)
    writer.fsync_every = 1 << 30  # one fsync per window, as 0.1 wrote
    started = time.perf_counter()
    keys = 0
    with writer:
        stream = client.open_stream(group_window=1 << 30)
        async with stream:
            pending = list(docs)
            while pending:
                window: list[DocWork] = []
                chunks = 0
                while pending and chunks < WINDOW_CHUNKS:
                    work = pipeline._prepare_work(pending.pop(0), set(), None, None)
                    work.requests = [dataclasses.replace(r, retry_max_tokens=None) for r in work.requests]
                    window.append(work)
                    chunks += len(work.requests)
                first = await _batch(stream, window, keys, retry=False)
                keys += first
                retried = await _batch(stream, window, keys, retry=True)
                keys += retried
                records = [pipeline.record(w) for w in window]
                writer.write(records)
                writer.sync()
                for record in records:
                    pipeline.count(record)
            stream.end()
            async for _ in stream:
                pass
            engine = dict(stream.stats.engine)
    finished = time.perf_counter()
    return finished - started, engine, _ages(started, finished, writer.durable_at), pipeline.summary


async def _batch(stream: Any, window: list[DocWork], first_key: int, *, retry: bool) -> int:
    """Send one batch of a window and wait for all its answers (the window barrier)."""
    items: list[StreamItem] = []
    where: dict[int, tuple[DocWork, int]] = {}
    for seq, work in enumerate(window):
        for i, request in enumerate(work.requests):
            if retry:
                answer = work.responses.get(i)
                prepared = work.chunks[i]
                if answer is None or not answer.truncated or prepared.room <= prepared.max_tokens:
                    continue
                if looping(answer.content):
                    continue
                request = dataclasses.replace(request, max_tokens=min(2 * prepared.max_tokens, prepared.room))
            key = first_key + len(items)
            where[key] = (work, i)
            items.append(StreamItem(key, request, group=seq, group_size=len(work.requests)))
    if not items:
        return 0
    await stream.submit(items)
    stream.flush()
    left = len(items)
    async for result in stream:
        work, i = where[result.key]
        if not retry or result.response.success:
            work.responses[i] = result.response
        left -= 1
        if left == 0:
            break
    return len(items)


async def _stream_run(client: VLLMClientInterface, b: Bench, out: Path) -> Any:
    writers: list[_TimedWriter] = []

    class Writer(_TimedWriter):
        def __init__(self, path: Path, **_: Any) -> None:
            super().__init__(path)
            writers.append(self)

    import vllm_extract.run.runner as runner

    original = runner.OutputWriter
    runner.OutputWriter = Writer  # type: ignore[misc] - the bench watches the run's fsyncs
    try:
        started = time.perf_counter()
        result = await run_job([str(b.corpus)], out, b.settings, RunOptions(overwrite=True), client=client)
        finished = time.perf_counter()
    finally:
        runner.OutputWriter = original  # type: ignore[misc]
    return finished - started, result.summary.engine, _ages(started, finished, writers[0].durable_at), result.summary


def row12_stream_vs_windows(b: Bench, client: VLLMClientInterface) -> Row:
    """Both designs over the row's own corpus (``b``), retries of cut answers on (0.1 retried them in
    a second batch per window: its second barrier)."""
    from vllm_extract import Settings
    from vllm_extract.run.plan import plan_for_local_model

    b.settings = Settings(b.settings.vllm, dataclasses.replace(b.settings.extraction, retry_truncated=True))
    plan = plan_for_local_model(b.settings)
    results: dict[str, Any] = {}
    repeats = getattr(b.args, "row12_repeats", 2)
    for name in ("window", "stream") * repeats:  # alternated; the better pass of each is kept
        asyncio.run(client.reset_prefix_cache())  # type: ignore[attr-defined]
        out = b.work / f"row12-{name}.jsonl"
        run = _window_run(client, plan, b.docs, out) if name == "window" else _stream_run(client, b, out)
        seconds, engine, ages, summary = asyncio.run(run)
        print(f"  {name}: {seconds:.1f}s occupancy {engine.get('occupancy')} idle {engine.get('idle_share')}")
        if name not in results or seconds < results[name]["seconds"]:
            results[name] = {"seconds": seconds, "engine": engine, "ages": ages, "summary": summary}
    w, s = results["window"], results["stream"]
    docs = len(b.docs)
    ratio = w["seconds"] / s["seconds"]

    def fmt(r: dict[str, Any]) -> str:
        e = r["engine"]
        ages = ", ".join("-" if a is None else f"{a:.1f}s" for a in r["ages"])
        return (
            f"occupancy {e.get('occupancy')}, idle {e.get('idle_share', 0):.1%}, {docs / r['seconds']:.2f} docs/s, "
            f"newest durable record at 30/60/90%: {ages} old"
        )

    chunks = s["summary"].chunks
    occupancy = s["engine"].get("occupancy") or 0.0
    idle = s["engine"].get("idle_share") or 1.0
    return {
        "title": "streaming run vs 0.1's windows (same engine, mixed lengths, max_num_seqs 256)",
        "result": f"stream: {fmt(s)}; windows: {fmt(w)}; documents/s ratio {ratio:.2f}",
        "goal": "stream occupancy >= 0.95, idle <= 2%",
        "met": occupancy >= 0.95 and idle <= 0.02,
        "limit": f"{docs} documents, {chunks} chunks ({WINDOW_CHUNKS}-chunk windows: "
        f"{-(-chunks // WINDOW_CHUNKS)} windows); the tiny model's answers are short and even, so the "
        "windows' tails are short: with a real model's varied answer lengths the gap grows",
        "ratio": ratio,
        "stream": {k: v for k, v in s.items() if k != "summary"},
        "window": {k: v for k, v in w.items() if k != "summary"},
    }


if __name__ == "__main__":
    import argparse
    import tempfile

    from corpus import write_corpus

    from vllm_extract import DirectVLLMClient

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=160)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--chunk-tokens", type=int, default=600)
    parser.add_argument("--row12-repeats", type=int, default=2, help="passes of each design; the better is kept")
    args = parser.parse_args()
    args.long_every, args.long_paragraphs = 4, 20
    work = Path(tempfile.mkdtemp(prefix="bench-row12-"))
    corpus = write_corpus(work / "corpus.jsonl", args.docs, **common.corpus_kwargs(args))
    settings = common.make_settings(args.max_tokens, args.chunk_tokens)
    bench = Bench(args, work, corpus, common.load_documents(corpus), settings)
    client = DirectVLLMClient.from_plan(bench.plan)
    asyncio.run(client.connect())
    try:
        row = row12_stream_vs_windows(bench, client)
    finally:
        asyncio.run(client.close())
    print(row["result"])
