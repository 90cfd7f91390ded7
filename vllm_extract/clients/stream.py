"""Streams: how a run hands requests to an engine and gets responses back, one request at a time.

A run opens one ``RequestStream`` on its client (``client.open_stream``) and keeps it fed:
``submit`` adds requests in input order, ``flush`` says "nothing more for now" and ``end`` "nothing
more in this run"; iterating the stream yields each request's final response (after the retry of a
cut answer) as soon as it is done, in completion order. Every transport implements it: the
in-process engine (``direct``: a deterministic engine loop in a process of its own), Ray replicas
(``ray``) and OpenAI-compatible servers (``http``).

Each request travels as a ``StreamItem``: a ``key`` the run chooses (unique in the stream), the
request, and its ``group`` (the document it belongs to, numbered in input order) with the number
of requests in that group. The engine loop uses groups to bound how far ahead of the oldest
unfinished document it admits work (``group_window``): that bound is what keeps the run's reorder
buffer (documents finished but waiting for an earlier one) bounded.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import VLLMRequest, VLLMResponse

__all__ = [
    "OccupancyMeter",
    "RequestStream",
    "StepRecord",
    "StreamItem",
    "StreamResult",
    "StreamStats",
    "TaskStream",
]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class StreamItem:
    """One request in a stream. ``key``: unique in the stream, chosen by the caller; ``group``: the
    document (numbered from 0 in input order); ``group_size``: the requests of that group;
    ``solo``: run it alone in the engine (set by the supervisor when it isolates a request that
    may kill the engine)."""

    key: int
    request: VLLMRequest
    group: int = 0
    group_size: int = 1
    solo: bool = False


@dataclass(frozen=True, slots=True)
class StreamResult:
    """A request's final response, with the key it was submitted under."""

    key: int
    response: VLLMResponse


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One engine step as the engine loop saw it: ``running`` requests computed, ``waiting``
    requests admitted but not scheduled (held back by KV-cache space or the per-step token
    budget), ``kv_usage`` (0.0 to 1.0), ``seconds`` the step took and ``finished`` requests it
    completed."""

    running: int
    waiting: int
    kv_usage: float
    seconds: float
    finished: int


class OccupancyMeter:
    """Engine occupancy: the mean over steps of ``running / min(max_num_seqs, unfinished)``.

    ``unfinished`` is the run's unfinished requests at that step, sent or not: every engine request
    the run will ever make (retries included) minus those finished before the step. The total is
    known only at the end, but ``min`` makes it matter only for the last ``max_num_seqs``
    completions, so only the steps of that tail are kept (memory is bounded by the tail, not by the
    run). Steps with requests waiting while fewer than ``max_num_seqs`` ran are *limited* (by
    KV-cache space or the per-step token budget, not by the feed): they are counted apart, and the
    occupancy of the feed is taken over the other steps.
    """

    def __init__(self, max_num_seqs: int) -> None:
        self.max_num_seqs = max(1, max_num_seqs)
        self.steps = 0
        self.limited_steps = 0
        self.finished = 0
        self.busy_seconds = 0.0
        self._sum = 0.0
        self._sum_all = 0.0
        self._tail: collections.deque[tuple[int, int, bool]] = collections.deque()

    def step(self, record: StepRecord) -> None:
        """Account one engine step (running, waiting, finished, seconds)."""
        limited = record.waiting > 0 and record.running < self.max_num_seqs
        self.steps += 1
        self.limited_steps += limited
        self.busy_seconds += record.seconds
        self._tail.append((record.running, self.finished, limited))
        self.finished += record.finished
        while self._tail and self._tail[0][1] < self.finished - self.max_num_seqs:
            running, _, was_limited = self._tail.popleft()
            self._add(running / self.max_num_seqs, was_limited)

    def _add(self, share: float, limited: bool) -> None:
        share = min(1.0, share)
        self._sum_all += share
        if not limited:
            self._sum += share

    def result(self) -> dict[str, Any]:
        """``occupancy`` (feed occupancy, limited steps left out), ``occupancy_all_steps``,
        ``steps``, ``limited_steps``, ``busy_seconds``. Call once the run's requests are all done
        (the total is then ``finished``); the tail is folded in without being consumed."""
        total = self.finished
        feed, every = self._sum, self._sum_all
        for running, before, limited in self._tail:
            share = min(1.0, running / max(1, min(self.max_num_seqs, total - before)))
            every += share
            if not limited:
                feed += share
        counted = self.steps - self.limited_steps
        return {
            "occupancy": round(feed / counted, 4) if counted else None,
            "occupancy_all_steps": round(every / self.steps, 4) if self.steps else None,
            "steps": self.steps,
            "limited_steps": self.limited_steps,
            "busy_seconds": round(self.busy_seconds, 3),
        }


@dataclass
class StreamStats:
    """What a stream measured: engine steps and occupancy (engine transports), the engine's idle
    share of the stream's wall time, restarts and poison requests (see ``supervisor``)."""

    engine: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    poison_requests: int = 0
    engine_pids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.engine,
            "engine_restarts": self.restarts,
            "poison_requests": self.poison_requests,
            "engine_pids": list(self.engine_pids),
        }


class RequestStream(abc.ABC):
    """One run's requests in, final responses out (see the module docstring).

    Use as an async context manager and an async iterator::

        async with client.open_stream() as stream:
            await stream.submit(items); stream.end()
            async for result in stream: ...

    Iteration ends once ``end`` was called and every submitted request has its response. It
    raises ``EngineRestartsExhausted`` when the engine died more often than the restart bound
    allows (the responses already yielded stand), and ``ModelNotLoadedError`` when no engine can
    be started again.
    """

    stats: StreamStats

    @abc.abstractmethod
    async def submit(self, items: Sequence[StreamItem]) -> None:
        """Add requests, in input order. Returns once they are handed over (not when done)."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Nothing more for now: the engine may run what it has without waiting for more."""

    @abc.abstractmethod
    def end(self) -> None:
        """Nothing more in this run (implies ``flush``)."""

    def withdraw(self) -> None:  # noqa: B027 - a stream that starts everything at once has nothing to take back
        """A run stops: take back every request not yet started; each is answered with
        ``error_kind="withdrawn"`` (its document is not written). Requests already started finish."""

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[StreamResult]:
        """Final responses as they complete."""

    async def aclose(self) -> None:  # noqa: B027 - most streams hold nothing to release
        """Release the stream (the engine stays loaded for the next one)."""

    async def __aenter__(self) -> RequestStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def outstanding(self) -> int:
        """Requests submitted and not yet answered."""
        return 0


class TaskStream(RequestStream):
    """A stream over a transport that answers one request at a time (``generate(request)``, e.g.
    an HTTP server): up to ``concurrency`` requests in flight, each its own task; the retry of a
    cut answer and further passes (``followups``) are made by the same task. ``on_response`` sees
    each attempt's response (client statistics); ``encode`` (text to token ids, document text as
    data) lets a later pass go as token ids when the first did.."""

    def __init__(
        self,
        generate: Callable[[VLLMRequest], Awaitable[VLLMResponse]],
        *,
        concurrency: int,
        on_response: Callable[[VLLMResponse], None] | None = None,
        encode: Callable[[str], list[int]] | None = None,
    ) -> None:
        self.stats = StreamStats()
        self._generate = generate
        self._encode = encode
        self._on_response = on_response
        self._semaphore = asyncio.Semaphore(max(1, concurrency))
        self._queue: asyncio.Queue[StreamResult | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[asyncio.Task[None], StreamItem] = {}  # submitted, not yet holding a slot
        self._pending = 0
        self._ended = False

    @property
    def outstanding(self) -> int:
        return self._pending

    async def submit(self, items: Sequence[StreamItem]) -> None:
        for item in items:
            self._pending += 1
            task = asyncio.ensure_future(self._run(item))
            self._tasks.add(task)
            self._waiting[task] = item
            task.add_done_callback(self._tasks.discard)

    def withdraw(self) -> None:
        for task, item in list(self._waiting.items()):
            task.cancel()
            self._waiting.pop(task, None)
            message = "withdrawn before it was sent: the run was asked to stop"
            self._finish(item, VLLMResponse(item.request.request_id, error=message, error_kind="withdrawn"))

    def _finish(self, item: StreamItem, response: VLLMResponse) -> None:
        self._pending -= 1
        self._queue.put_nowait(StreamResult(item.key, response))
        if self._ended and not self._pending:
            self._queue.put_nowait(None)

    async def _one(self, request: VLLMRequest) -> VLLMResponse:
        try:
            response = await self._generate(request)
        except Exception as exc:
            logger.exception("request %s failed unexpectedly", request.request_id)
            response = VLLMResponse(request.request_id, error=f"unexpected error: {exc!r}", error_kind="internal")
        if self._on_response is not None:
            self._on_response(response)
        return response

    async def _run(self, item: StreamItem) -> None:
        from .followups import merge_passes, merge_retry, next_pass, retry_budget

        async with self._semaphore:
            self._waiting.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            request: VLLMRequest | None = item.request
            answers: list[VLLMResponse] = []
            while request is not None:
                response = await self._one(request)
                budget = retry_budget(request, response)
                if budget is not None:
                    response = merge_retry(response, await self._one(dataclasses.replace(request, max_tokens=budget)))
                if not response.success and answers:
                    break  # a failed later pass ends the passes; the earlier answers stand
                answers.append(response)
                answer_ids = self._encode(response.content) if self._encode is not None else None
                request = next_pass(request, response, answer_ids)
            response = merge_passes(answers)
        self._finish(item, response)

    def flush(self) -> None:
        pass

    def end(self) -> None:
        self._ended = True
        if not self._pending:
            self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[StreamResult]:
        while True:
            result = await self._queue.get()
            if result is None:
                if self._ended and not self._pending:
                    return
                continue
            yield result

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
