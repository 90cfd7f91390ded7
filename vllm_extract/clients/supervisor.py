"""Restarting dead engines, and finding the request that kills them.

The supervisor keeps, for one engine, what its stream submitted and not yet got back (in
submission order) and which of those the engine had admitted. When the engine dies (its process
exits: a crash, ``EngineDeadError``, vLLM's execute-model timeout, an OOM kill, a ``SIGKILL``), the
stream takes one restart from the run's ``RestartBudget`` (shared by every engine and replica of the
run, Ray's own actor restarts included), starts a fresh engine and sends the unanswered requests
again, in their order. Nothing is mined from a dead engine.

A poison request (one that kills every engine it reaches) is found within the bound like this:

1. a crash: restart and resend everything unanswered;
2. a second crash with requests that were in the engine both times: those are *suspects*; after
   the restart each suspect runs alone (``StreamItem.solo``: nothing else is admitted while it
   runs), one after the other, before everything else;
3. a crash while a suspect runs alone: that suspect is the poison request. It is answered with
   ``error_kind="poison_request"`` (its document gets an error record of that kind) and never sent
   again; the others go on.

A single poison request thus costs three restarts. When the budget is spent the stream raises
``EngineRestartsExhausted``: the run stops cleanly, documents not finished are not written, and
``--resume`` continues later.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Iterable, Sequence

from ..exceptions import EngineRestartsExhausted
from .base import VLLMResponse
from .stream import StreamItem

__all__ = ["RestartBudget", "Supervisor"]

logger = logging.getLogger(__name__)


class RestartBudget:
    """Engine restarts a run may take (``max_engine_restarts``), shared by all its engines."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.used = 0
        self.reasons: list[str] = []

    def take(self, reason: str) -> None:
        """Count one restart; raises ``EngineRestartsExhausted`` when none is left."""
        if self.used >= self.limit:
            raise EngineRestartsExhausted(
                f"the engine died {self.used + 1} times in this run (the bound is {self.limit} restarts); "
                f"last: {reason}",
                hint="documents not finished were not written: fix the cause (see the engine log), then rerun "
                "with --resume; raise max_engine_restarts to allow more",
            )
        self.used += 1
        self.reasons.append(reason)
        logger.warning("engine died (%s); restart %d of %d", reason, self.used, self.limit)


class Supervisor:
    """One engine's unanswered requests and the poison search (see the module docstring)."""

    def __init__(self) -> None:
        self.unanswered: collections.OrderedDict[int, StreamItem] = collections.OrderedDict()
        self.in_engine: set[int] = set()
        self._last_crash: set[int] | None = None
        self.poisoned: list[int] = []

    def submitted(self, items: Iterable[StreamItem]) -> None:
        for item in items:
            self.unanswered[item.key] = item

    def admitted(self, keys: Iterable[int]) -> None:
        self.in_engine.update(k for k in keys if k in self.unanswered)

    def answered(self, key: int) -> None:
        self.unanswered.pop(key, None)
        self.in_engine.discard(key)

    def crashed(self) -> tuple[list[StreamItem], list[tuple[int, VLLMResponse]]]:
        """After a crash: the items to send to the fresh engine, in order (suspects first, each
        ``solo``), and the poison answers (key, error response) found by this crash."""
        in_engine = set(self.in_engine)
        self.in_engine.clear()
        poison: list[tuple[int, VLLMResponse]] = []
        solo = [k for k in in_engine if self.unanswered[k].solo]
        if len(solo) == 1:  # it ran alone and the engine died: poison
            key = solo[0]
            item = self.unanswered.pop(key)
            self.poisoned.append(key)
            message = "this request killed a fresh engine while running alone (a poison request); it was not sent again"
            poison.append((key, VLLMResponse(item.request.request_id, error=message, error_kind="poison_request")))
            logger.error("request %s is a poison request: it killed the engine again, alone", item.request.request_id)
            self._last_crash = None
        elif self._last_crash is not None:
            suspects = in_engine & self._last_crash
            for key in suspects:
                self.unanswered[key].solo = True
            if suspects:
                logger.warning("%d request(s) were in the engine at both crashes: running each alone", len(suspects))
            self._last_crash = in_engine
        else:
            self._last_crash = in_engine
        return _resubmission(self.unanswered.values()), poison


def _resubmission(items: Iterable[StreamItem]) -> list[StreamItem]:
    """Unanswered items for a fresh engine: solo ones first, then the rest, each in submission
    order, with ``group_size`` counting what is sent again of each group."""
    ordered: Sequence[StreamItem] = sorted(items, key=lambda i: not i.solo)
    sizes = collections.Counter(i.group for i in ordered)
    return [dataclasses.replace(i, group_size=sizes[i.group]) for i in ordered]
