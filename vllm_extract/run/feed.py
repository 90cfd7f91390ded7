"""The feed of a run: prepared documents handed from the preparation thread to the event loop
(``Handoff``), dispatched to the client's request stream and collected back in input order
(``Run``). ``run.pipeline`` builds the work and the records; this module moves it (see the
pipeline's module docstring for the three parts and the durability bound).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from ..clients.base import VLLMRequest, VLLMResponse
from ..clients.stream import RequestStream, StreamItem
from ..events import ChunkDone, EnginePhase
from ..exceptions import EngineRestartsExhausted
from ..readers import BadInput, Document

if TYPE_CHECKING:
    from .pipeline import ExtractionPipeline, PreparedChunk

__all__ = ["DocWork", "Handoff", "Run"]

logger = logging.getLogger(__name__)


@dataclass
class DocWork:
    item: Document | BadInput
    chunks: list[PreparedChunk] = field(default_factory=list)
    requests: list[VLLMRequest] = field(default_factory=list)
    error: tuple[str, str] | None = None
    duplicate: bool = False
    sha: str | None = None
    done: bool = False
    reused: dict[str, Any] | None = None
    responses: dict[int, VLLMResponse] = field(default_factory=dict)

    def chunk_answered(self, index: int) -> bool:
        """Whether every request of the chunk that request ``index`` asks about is answered (one
        request per chunk, or one per question with ``--strategy per-type``)."""
        chunk = self.chunks[index].chunk.index if self.chunks else index
        return all(i in self.responses for i, p in enumerate(self.chunks) if p.chunk.index == chunk)


class Handoff:
    """Prepared documents from the preparation thread to the event loop, bounded in requests."""

    _END = object()

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._cond = threading.Condition()
        self._items: collections.deque[Any] = collections.deque()
        self._requests = 0
        self.closed = False

    def put(self, work: Any, requests: int) -> bool:
        """Wait for room, then hand ``work`` over; False when the handoff was closed."""
        with self._cond:
            while self._requests > 0 and self._requests + requests > self.limit and not self.closed:
                self._cond.wait()
            if self.closed:
                return False
            self._items.append((work, requests))
            self._requests += requests
            self._cond.notify_all()
            return True

    def finish(self, error: BaseException | None = None) -> None:
        self.put(error if error is not None else self._END, 0)

    def get(self) -> Any:
        """The next prepared document, an exception from the preparation thread, or ``_END``
        (also once the handoff is closed)."""
        with self._cond:
            while not self._items and not self.closed:
                self._cond.wait()
            if not self._items:
                return self._END
            work, requests = self._items.popleft()
            self._requests -= requests
            self._cond.notify_all()
        return work

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class Run:
    """One run's dispatch and collection (see the module docstring)."""

    def __init__(
        self,
        pipeline: ExtractionPipeline,
        sink: Callable[[list[dict[str, Any]]], None],
        tick: Callable[[], None] | None,
    ) -> None:
        self.p = pipeline
        self.sink = sink
        self.tick = tick
        self.docs: dict[int, DocWork] = {}  # dispatched, not yet written, by sequence number
        self.ready: dict[int, dict[str, Any] | None] = {}  # done, waiting to be written in order
        self.next_to_write = 0
        self.by_key: dict[int, tuple[int, int]] = {}  # stream key -> (sequence, chunk)
        self.keys = 0
        self.changed = asyncio.Event()
        self.dispatch_done = False
        self.generation_seconds = 0.0
        self._first_response = True
        self.prefill_tokens = 0
        self.blocked = 1 << 62  # the first document with a withdrawn request (a stop): written up to it

    async def go(self, handoff: Handoff, stream: RequestStream) -> None:
        started = time.perf_counter()
        dispatch = asyncio.ensure_future(self._dispatch(handoff, stream))
        try:
            await self._collect(stream, dispatch)
        except EngineRestartsExhausted as exc:
            self.p.summary.stopped = str(exc)
            logger.error("%s", exc)
        finally:
            if not dispatch.done():
                dispatch.cancel()
            handoff.close()
            self.generation_seconds = time.perf_counter() - started
        if dispatch.done() and not dispatch.cancelled() and dispatch.exception() is not None:
            raise cast(BaseException, dispatch.exception())

    async def _dispatch(self, handoff: Handoff, stream: RequestStream) -> None:
        p = self.p
        seq = 0
        try:
            while True:
                if p.stop_event.is_set():
                    p.summary.interrupted = True
                    logger.warning("stop requested: finishing the requests the engine started; the rest are not sent")
                    stream.withdraw()
                    break
                work = await asyncio.to_thread(handoff.get)
                if work is Handoff._END:
                    break
                if isinstance(work, BaseException):
                    raise work
                if work.done:
                    p.summary.skipped_done += 1
                if work.requests and not work.done:
                    while stream.outstanding >= p.queue_requests or seq >= self.next_to_write + p.reorder_window:
                        self.changed.clear()
                        await self.changed.wait()
                    self.docs[seq] = work
                    items = []
                    for i, request in enumerate(work.requests):
                        self.by_key[self.keys] = (seq, i)
                        items.append(StreamItem(self.keys, request, group=seq, group_size=len(work.requests)))
                        self.keys += 1
                    if self._first_response:
                        self.prefill_tokens += sum(len(r.prompt_token_ids or ()) for r in work.requests)
                        p.emit(EnginePhase("prefill", self.prefill_tokens))
                    await stream.submit(items)
                else:
                    self.docs[seq] = work
                    self._done(seq)
                seq += 1
        finally:
            self.dispatch_done = True
            stream.end()
            self.changed.set()

    async def _collect(self, stream: RequestStream, dispatch: asyncio.Future[None]) -> None:
        p = self.p
        async for result in stream:
            seq, index = self.by_key.pop(result.key)
            work = self.docs[seq]
            if result.response.error_kind == "withdrawn":
                self.blocked = min(self.blocked, seq)  # neither it nor any later document is written
                continue
            work.responses[index] = result.response
            p.count_response(result.response)
            if self._first_response:
                self._first_response = False
                p.emit(EnginePhase("generating", 0))
            response = result.response
            p.emit(
                ChunkDone(
                    response.request_id,
                    response.completion_tokens,
                    response.attempts > 1,
                    prompt_tokens=response.prompt_tokens,
                    chunk_done=work.chunk_answered(index),
                )
            )
            if len(work.responses) == len(work.requests):
                self._done(seq)
            if self.tick is not None:
                self.tick()
        if dispatch.done() and not dispatch.cancelled() and dispatch.exception() is not None:
            return
        await dispatch

    def _done(self, seq: int) -> None:
        work = self.docs[seq]
        self.ready[seq] = None if work.done else self.p.record(work)
        records: list[dict[str, Any]] = []
        while self.next_to_write in self.ready and self.next_to_write < self.blocked:
            record = self.ready.pop(self.next_to_write)
            del self.docs[self.next_to_write]
            if record is not None:
                records.append(record)
            self.next_to_write += 1
        if records:
            self.sink(records)
            for record in records:
                self.p.count(record)
        self.changed.set()
