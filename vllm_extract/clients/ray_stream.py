"""The stream of a ``RayVLLMClient``: documents handed to replicas as they free up.

Each replica has its own ``Supervisor`` (what it was given and not yet answered); the driver keeps
a backlog of documents (groups of requests, in input order) and gives the next one to the replica
with the fewest unanswered requests while that is under ``pull`` (one replica: no limit, so its
loop sees the whole input in order and feeds deterministically). One poll task per replica
collects its outputs. A replica that died is waited for (Ray restarts it), counted against the
run's restart bound and sent its unanswered requests again; one that does not come back is dropped
and its requests go back to the front of the backlog.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import ModelNotLoadedError
from .base import VLLMResponse
from .stream import RequestStream, StreamItem, StreamResult, StreamStats
from .supervisor import RestartBudget, Supervisor

if TYPE_CHECKING:
    from .ray import RayVLLMClient

__all__ = ["RayStream"]

logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.5


class _Replica:
    def __init__(self, actor: Any, seq: int) -> None:
        self.actor = actor
        self.supervisor = Supervisor()
        self.seq = seq  # the actor applies messages in sequence order, across streams
        self.alive = True
        self.drained: dict[str, Any] = {}
        self.task: asyncio.Task[None] | None = None

    @property
    def outstanding(self) -> int:
        return len(self.supervisor.unanswered)

    def send(self, kind: str, payload: Any = None) -> None:
        self.actor.deliver.remote(self.seq, kind, payload)
        self.seq += 1


class RayStream(RequestStream):
    """A stream over a connected ``RayVLLMClient``'s replicas (see the module docstring)."""

    def __init__(self, client: RayVLLMClient, *, deterministic: bool, group_window: int) -> None:
        self.client = client
        self.ray = client._ray
        self.deterministic = deterministic
        self.group_window = group_window
        self.stats = StreamStats()
        self.restarts = RestartBudget(client.config.max_engine_restarts)  # shared by the replicas
        self.replicas = [_Replica(actor, client._next_seq.get(id(actor), 0)) for actor in client._actors]
        single = len(self.replicas) == 1
        self.pull = 1 << 62 if single else max(1, client.options.pull_requests or 2 * client.config.max_num_seqs)
        self.backlog: collections.deque[list[StreamItem]] = collections.deque()
        self._queue: asyncio.Queue[StreamResult | BaseException | None] = asyncio.Queue()
        self._ended = False
        self._end_sent = False
        self._closed = False
        for replica in self.replicas:
            replica.send("begin", (deterministic and single, group_window))
            replica.task = asyncio.ensure_future(self._poll(replica))
        self.stats.engine_pids = [int(info["pid"]) for info in client.replica_info]

    @property
    def outstanding(self) -> int:
        return sum(r.outstanding for r in self.replicas) + sum(len(g) for g in self.backlog)

    async def submit(self, items: Sequence[StreamItem]) -> None:
        group: list[StreamItem] = []
        for item in items:
            if group and item.group != group[0].group:
                self.backlog.append(group)
                group = []
            group.append(item)
        if group:
            self.backlog.append(group)
        self._assign()

    def _assign(self) -> None:
        alive = [r for r in self.replicas if r.alive]
        while self.backlog and alive:
            replica = min(alive, key=lambda r: r.outstanding)
            if replica.outstanding >= self.pull:
                break
            group = self.backlog.popleft()
            replica.supervisor.submitted(group)
            replica.send("submit", group)
        if self._ended and not self.backlog and not self._end_sent:
            self._end_sent = True
            for replica in alive:
                replica.send("end")

    def flush(self) -> None:
        for replica in self.replicas:
            if replica.alive:
                replica.send("flush")

    def withdraw(self) -> None:
        message = "withdrawn before it reached an engine: the run was asked to stop"
        while self.backlog:
            for item in self.backlog.popleft():
                response = VLLMResponse(item.request.request_id, error=message, error_kind="withdrawn")
                self._queue.put_nowait(StreamResult(item.key, response))
        for replica in self.replicas:
            if replica.alive:
                replica.send("withdraw")

    def end(self) -> None:
        self._ended = True
        self._assign()
        self._maybe_finish()

    async def _poll(self, replica: _Replica) -> None:
        ray = self.ray
        while not self._closed and replica.alive:
            try:
                outputs = await asyncio.to_thread(ray.get, replica.actor.poll.remote(_POLL_SECONDS))
            except ray.exceptions.RayError as exc:
                if self._closed:
                    return
                await self._died(replica, exc)
                continue
            for out in outputs:
                replica.supervisor.admitted(out.admitted)
                for key, response in out.responses:
                    if key in replica.supervisor.unanswered:
                        replica.supervisor.answered(key)
                        self.client.stats.record(response)
                        self._queue.put_nowait(StreamResult(key, response))
                if out.drained is not None:
                    replica.drained = out.drained
            if outputs:
                self._assign()
                self._maybe_finish()

    async def _died(self, replica: _Replica, exc: BaseException) -> None:
        from .ray import _cause

        reason = f"Ray engine replica died: {_cause(exc)}"
        items, poison = replica.supervisor.crashed()
        for key, response in poison:
            self.stats.poison_requests += 1
            self._queue.put_nowait(StreamResult(key, response))
        try:
            self.restarts.take(reason)
        except BaseException as error:  # noqa: BLE001 - ends the stream
            self._fail(error)
            return
        self.stats.restarts += 1
        info = await asyncio.to_thread(self.client._replica_is_back, replica.actor)
        if info is not None:
            self.stats.engine_pids.append(int(info["pid"]))
            replica.seq = 0
            replica.send("begin", (self.deterministic and len(self.replicas) == 1, self.group_window))
            if items:
                replica.send("submit", items)
            if self._end_sent:
                replica.send("end")
            logger.warning("Ray engine replica is back (pid %s): %s", info["pid"], reason)
        else:
            replica.alive = False
            self.client._drop(replica.actor, exc)
            groups: dict[int, list[StreamItem]] = {}
            for item in items:
                groups.setdefault(item.group, []).append(item)
            for group in sorted(groups, reverse=True):
                self.backlog.appendleft(groups[group])
            replica.supervisor.unanswered.clear()
            if not any(r.alive for r in self.replicas):
                self._fail(
                    ModelNotLoadedError(
                        "every Ray engine replica is gone",
                        hint="check the cluster and the replica logs (ray logs); written records are kept: "
                        "rerun with --resume",
                    )
                )
                return
            self._end_sent = False
            self._assign()
        self._maybe_finish()

    def _fail(self, error: BaseException) -> None:
        self._closed = True
        self._queue.put_nowait(error)

    def _finished(self) -> bool:
        return self._ended and not self.backlog and all(not r.outstanding for r in self.replicas)

    def _maybe_finish(self) -> None:
        if self._finished():
            self._combine_stats()
            self._queue.put_nowait(None)

    def _combine_stats(self) -> None:
        drained = [r.drained for r in self.replicas if r.drained]
        if not drained:
            return
        steps = sum(int(d.get("steps", 0)) for d in drained)

        def weighted(key: str) -> float | None:
            values = [(float(d[key]), int(d.get("steps", 0))) for d in drained if d.get(key) is not None]
            total = sum(w for _, w in values)
            return round(sum(v * w for v, w in values) / total, 4) if total else None

        idle = [d["idle_share"] for d in drained if d.get("idle_share") is not None]
        self.stats.engine = {
            "occupancy": weighted("occupancy"),
            "occupancy_all_steps": weighted("occupancy_all_steps"),
            "steps": steps,
            "limited_steps": sum(int(d.get("limited_steps", 0)) for d in drained),
            "busy_seconds": round(sum(float(d.get("busy_seconds", 0.0)) for d in drained), 3),
            "idle_share": round(sum(idle) / len(idle), 4) if idle else None,
            "replicas": len(drained),
        }

    async def __aiter__(self) -> AsyncIterator[StreamResult]:
        while True:
            item = await self._queue.get()
            if item is None:
                if self._finished():
                    return
                continue
            if isinstance(item, BaseException):
                raise item
            yield item

    async def aclose(self) -> None:
        self._closed = True
        for replica in self.replicas:
            self.client._next_seq[id(replica.actor)] = replica.seq
        for replica in self.replicas:
            if replica.task is not None:
                replica.task.cancel()
        if self.client._stream is self:
            self.client._stream = None
