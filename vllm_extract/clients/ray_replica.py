"""EngineReplica: one engine replica, run by Ray as an actor (``ray.remote(EngineReplica)``).

It runs the same ``EngineLoop`` as a local engine process, on a thread of its own; the driver's
calls (``deliver``, ``poll``) only touch queues, so they answer while the engine steps. Messages
carry a sequence number and are applied in that order: a threaded actor runs calls concurrently,
in no guaranteed order. When the engine dies the thread ends the actor's process, so that Ray
starts it again (``max_restarts``) with a fresh engine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import socket
import threading
from typing import Any

from ..config import VLLMConfig
from .base import ModelResolver

__all__ = ["EngineReplica"]

logger = logging.getLogger(__name__)


class EngineReplica:
    """One engine replica (see the module docstring).

    ``model`` is resolved on the replica's own node by ``resolve`` (the run layer passes its model
    resolver, so ``tiny`` is prepared there and a hub id comes from that node's cache). Raises
    ``ModelNotLoadedError`` from the constructor when the engine does not load.
    """

    def __init__(
        self,
        config: VLLMConfig,
        model: str,
        max_model_len: int | None,
        resolve: ModelResolver,
    ) -> None:
        _unnice()  # before the engine starts: its threads inherit the priority
        from ..extract.tokens import HFTokenizer
        from .engine_build import build_llm
        from .engine_loop import EngineLoop

        resolved = resolve(model)
        path = resolved.path
        config = dataclasses.replace(config, data_parallel_size=1)
        llm, cpu = build_llm(config, path, max_model_len)
        self._tokenizer = HFTokenizer(llm.get_tokenizer(), name=path)
        self.loop = EngineLoop(llm, config, tokenize=self._tokenizer.encode_chat)
        self._outbox: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._next = 0
        self._held: dict[int, tuple[str, Any]] = {}
        self.info = {
            "pid": os.getpid(),
            "node": socket.gethostname(),
            "model_path": path,
            "revision": resolved.revision,
            "max_model_len": self.loop.max_model_len,
            "cpu": cpu,
            "dtype": str(llm.model_config.dtype).removeprefix("torch."),
            "max_num_batched_tokens": int(llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens),
            "block_size": int(llm.llm_engine.vllm_config.cache_config.block_size),
        }
        threading.Thread(target=self._run, name="engine-loop", daemon=True).start()

    def _run(self) -> None:
        try:
            self.loop.run(self._outbox.put)
        except BaseException as exc:  # noqa: BLE001 - the engine is dead: end the process, Ray restarts it
            logger.error("engine replica %d: the engine died: %s: %s", os.getpid(), type(exc).__name__, exc)
            os._exit(1)

    def ready(self) -> dict[str, Any]:
        """Where this replica runs and what it loaded (pid, node, model_path, max_model_len, cpu,
        dtype, max_num_batched_tokens)."""
        return self.info

    def deliver(self, seq: int, kind: str, payload: Any = None) -> None:
        """Apply driver messages in sequence order: ``begin`` (payload: deterministic, group_window),
        ``submit`` (payload: stream items), ``flush``, ``end``."""
        with self._lock:
            self._held[seq] = (kind, payload)
            while self._next in self._held:
                kind, payload = self._held.pop(self._next)
                self._next += 1
                if kind == "begin":
                    self.loop.begin(deterministic=payload[0], group_window=payload[1])
                elif kind == "submit":
                    self.loop.submit(payload)
                elif kind == "flush":
                    self.loop.flush()
                elif kind == "end":
                    self.loop.end()
                elif kind == "withdraw":
                    self.loop.withdraw()

    def poll(self, timeout: float) -> list[Any]:
        """What the loop produced (``LoopOutput``), waiting up to ``timeout`` seconds for the first."""
        try:
            outputs = [self._outbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                outputs.append(self._outbox.get_nowait())
            except queue.Empty:
                return outputs

    def tokenizer(self) -> Any:
        """The engine's tokenizer (a ``tokens.HFTokenizer``), for a driver without the model files."""
        return self._tokenizer

    def reset_prefix_cache(self) -> bool:
        """Empty the engine's prefix cache (benchmarks: every pass does the same prefill)."""
        done = threading.Event()
        result: list[Any] = []

        def reply(value: Any) -> None:
            result.append(value)
            done.set()

        self.loop.call(self.loop.llm.reset_prefix_cache, reply)
        done.wait()
        if isinstance(result[0], BaseException):
            raise result[0]
        return bool(result[0])


def _unnice() -> None:
    """Run the calling thread at niceness 0 when allowed (root or CAP_SYS_NICE), else leave it.

    Ray starts its workers at niceness 15 (``RAY_worker_niceness``) to keep its own daemons
    responsive. An engine replica is the job's main work, and on a busy host (measured here: 2
    cores shared with other processes at 0) a replica at 15 loses the CPU to everything else.
    Linux keeps a niceness per thread, and new threads and processes take their creator's.
    """
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) > 0:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError as exc:
        logger.debug("engine replica keeps Ray's worker niceness: %s", exc)
