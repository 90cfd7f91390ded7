"""DirectVLLMClient: vLLM's engine on this machine, fed as a stream (``open_stream``).

A transport: it loads what it is told to load (``model_path``, ``max_model_len``: the run plan
resolves both) and sends what it is given. The engine runs in an engine process of its own
(``clients.engine_process``) driving vLLM's engine loop with the feeding rule of
``clients.engine_loop`` (deterministic: the same input and settings give the same batches, so the
same output). When that process dies, the stream restarts it and sends the unanswered requests
again, within the run's restart bound (``clients.supervisor``).

Nothing heavy is imported here: vLLM and torch load in the engine process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..config import VLLMConfig
from ..exceptions import ModelNotLoadedError
from .base import ResolvedModelLike, VLLMClientInterface, VLLMClientType, enforce_sampling
from .engine_process import EngineProcess, Message
from .stream import RequestStream, StreamItem, StreamResult, StreamStats
from .supervisor import RestartBudget, Supervisor

if TYPE_CHECKING:
    from ..extract.tokens import Tokenizer

__all__ = ["DEFAULT_GROUP_WINDOW", "DirectVLLMClient"]

logger = logging.getLogger(__name__)

DEFAULT_GROUP_WINDOW = 256  # documents an engine may run ahead of the oldest unfinished one


class _Plan(Protocol):
    """What ``from_plan`` reads of a run plan (``run.plan.RunPlan``)."""

    @property
    def vllm(self) -> VLLMConfig: ...

    @property
    def model(self) -> ResolvedModelLike: ...

    @property
    def max_model_len(self) -> int: ...


class DirectVLLMClient(VLLMClientInterface):
    """The engine on this machine (see the module docstring).

    ``model_path`` (default ``config.model``) must be loadable as it is: a local folder or a hub id
    (``from_plan`` takes both from a run plan, which resolves ``tiny``). ``max_model_len`` is the
    context the engine is built with; None lets vLLM use the model's own limit, read back after
    loading. A stream may restart the engine ``config.max_engine_restarts`` times.
    """

    client_type = VLLMClientType.DIRECT_API

    def __init__(
        self,
        config: VLLMConfig | None = None,
        *,
        model_path: str | None = None,
        max_model_len: int | None = None,
    ) -> None:
        super().__init__(config)
        self.model_path: str = model_path or self.config.model
        self._requested_len = max_model_len
        self._max_model_len = max_model_len or self.config.max_model_len
        self._process: EngineProcess | None = None
        self._stream: _EngineStream | None = None
        self._tokenizer: Tokenizer | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._call_ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.cpu = False
        self._idle_death: str | None = None  # the engine died between streams: the next one restarts it

    @classmethod
    def from_plan(cls, plan: _Plan) -> DirectVLLMClient:
        """A client for a run plan: its engine settings, resolved model folder and context."""
        return cls(plan.vllm, model_path=plan.model.path, max_model_len=plan.max_model_len)

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def engine_pid(self) -> int | None:
        """The engine process's pid (it changes when the engine is restarted)."""
        return self._process.pid if self._process is not None else None

    async def connect(self) -> bool:
        """Start the engine process and wait until the model is loaded. Raises
        ``ModelNotLoadedError`` (vLLM missing, or the model failed to load, with vLLM's message)."""
        if self._process is not None:
            return True
        from .engine_build import require_vllm

        require_vllm()
        await self._start()
        self.connected = True
        return True

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        process = EngineProcess(self.config, self.model_path, self._requested_len)
        info = await asyncio.to_thread(process.start, self._on_message_threadsafe)
        self._process, self.engine_info = process, info
        self._max_model_len = int(info["max_model_len"])
        self.cpu = bool(info["cpu"])

    def _on_message_threadsafe(self, message: Message) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._on_message, message)

    def _on_message(self, message: Message) -> None:
        kind = message[0]
        if kind == "reply":
            future = self._replies.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message[2])
        elif self._stream is not None:
            self._stream.on_message(message)
        elif kind == "dead":
            logger.warning("the engine died while no run was using it: %s", message[1])
            self._idle_death = str(message[1])

    def get_tokenizer(self) -> Tokenizer:
        """The model's tokenizer, loaded in this process from the model folder (or the Hugging Face
        cache vLLM filled while loading)."""
        if self._tokenizer is None:
            from ..extract.tokens import load_tokenizer

            self._tokenizer = load_tokenizer(self.model_path)
        return self._tokenizer

    def open_stream(
        self,
        *,
        deterministic: bool = True,
        group_window: int = DEFAULT_GROUP_WINDOW,
        encode: Callable[[str], list[int]] | None = None,
    ) -> RequestStream:
        """A stream on the engine (one at a time)."""
        if self._process is None:
            raise ModelNotLoadedError("the engine is not loaded", hint="await client.connect() first")
        if self._stream is not None:
            raise RuntimeError("this engine already serves a stream; close it first")
        self._loop = asyncio.get_running_loop()  # messages go to the loop the stream runs on
        self._stream = _EngineStream(self, deterministic=deterministic, group_window=group_window)
        return self._stream

    async def reset_prefix_cache(self) -> bool:
        """Empty the engine's prefix cache (benchmarks; a library caller running several jobs on one
        engine that wants each to start from the same state)."""
        if self._process is None:
            raise ModelNotLoadedError("the engine is not loaded", hint="await client.connect() first")
        call_id = next(self._call_ids)
        self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = self._loop.create_future()
        self._replies[call_id] = future
        self._process.send(("call", call_id, "reset_prefix_cache"))
        result = await future
        if isinstance(result, Exception):
            raise result
        return bool(result)

    async def _restart(self, reason: str) -> None:
        """Replace a dead engine (counted by the stream's caller against the restart budget)."""
        old, self._process = self._process, None
        if old is not None:
            await asyncio.to_thread(old.stop, 5.0)
        await self._start()
        logger.warning("engine restarted (pid %s): %s", self.engine_pid, reason)

    def kill_engine(self) -> None:
        """End the engine process at once (tests; a stream restarts it)."""
        if self._process is not None:
            self._process.kill()

    async def close(self) -> None:
        process, self._process = self._process, None
        self.connected = False
        if process is not None:
            await asyncio.to_thread(process.stop)


class _EngineStream(RequestStream):
    """A stream on a ``DirectVLLMClient``'s engine, with restarts (see ``supervisor``)."""

    def __init__(self, client: DirectVLLMClient, *, deterministic: bool, group_window: int) -> None:
        self.client = client
        self.deterministic = deterministic
        self.group_window = group_window
        self.stats = StreamStats()
        self.supervisor = Supervisor()
        self.restarts = RestartBudget(client.config.max_engine_restarts)
        self._queue: asyncio.Queue[StreamResult | BaseException | None] = asyncio.Queue()
        self._flushed = False
        self._ended = False
        self._restarting: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None
        self._withdraw = False
        if client._idle_death is not None:
            reason, client._idle_death = client._idle_death, None
            self._restarting = asyncio.ensure_future(self._restart(reason))
        else:
            self._send(("begin", deterministic, group_window))
        if client.engine_pid is not None:
            self.stats.engine_pids.append(client.engine_pid)

    @property
    def outstanding(self) -> int:
        return len(self.supervisor.unanswered)

    def _send(self, message: Message) -> None:
        process = self.client._process
        if process is not None:
            process.send(message)  # a dead process is reported as such; the restart resends

    async def submit(self, items: Sequence[StreamItem]) -> None:
        if self._failed is not None:
            raise self._failed
        items = list(items)
        for item in items:
            enforce_sampling(item.request, self.client.config)  # warns here, where the caller sees it
        self.supervisor.submitted(items)
        self._flushed = False
        if self._restarting is None:
            self._send(("submit", items))

    def flush(self) -> None:
        self._flushed = True
        if self._restarting is None:
            self._send(("flush",))

    def withdraw(self) -> None:
        self._withdraw = True  # a restart in progress sends it to the fresh engine
        if self._restarting is None:
            self._send(("withdraw",))

    def end(self) -> None:
        self._flushed = self._ended = True
        if self._restarting is None:
            self._send(("end",))
        self._maybe_finish()

    def on_message(self, message: Message) -> None:
        kind = message[0]
        if kind == "out":
            out = message[1]
            self.supervisor.admitted(out.admitted)
            for key, response in out.responses:
                if key in self.supervisor.unanswered:
                    self.supervisor.answered(key)
                    self.client.stats.record(response)
                    self._queue.put_nowait(StreamResult(key, response))
            if out.drained is not None:
                self.stats.engine = out.drained
            self._maybe_finish()
        elif kind == "dead" and self._restarting is None and self._failed is None:
            self._restarting = asyncio.ensure_future(self._restart(str(message[1])))

    async def _restart(self, reason: str) -> None:
        try:
            items, poison = self.supervisor.crashed()
            for key, response in poison:
                self.stats.poison_requests += 1
                self._queue.put_nowait(StreamResult(key, response))
            self.restarts.take(reason)
            self.stats.restarts += 1
            await self.client._restart(reason)
            if self.client.engine_pid is not None:
                self.stats.engine_pids.append(self.client.engine_pid)
            self._send(("begin", self.deterministic, self.group_window))
            if items:
                self._send(("submit", items))
            if self._withdraw:
                self._send(("withdraw",))
            if self._ended:
                self._send(("end",))
            elif self._flushed:
                self._send(("flush",))
        except BaseException as exc:  # noqa: BLE001 - ends the stream with this error
            self._failed = exc
            self._queue.put_nowait(exc)
        finally:
            self._restarting = None
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._ended and not self.supervisor.unanswered and self._restarting is None:
            self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[StreamResult]:
        while True:
            item = await self._queue.get()
            if item is None:
                if self._ended and not self.supervisor.unanswered:
                    return
                continue
            if isinstance(item, BaseException):
                raise item
            yield item

    async def aclose(self) -> None:
        if self._restarting is not None:
            self._restarting.cancel()
        if self.client._stream is self:
            self.client._stream = None
