"""The engine process: where ``DirectVLLMClient``'s engine lives, one ``EngineLoop`` in a process of
its own (``python -m vllm_extract.clients.engine_process``).

Why a process and not a thread of the caller: the engine loop must not share the interpreter lock
with the run's preparation (reading PDFs, tokenizing, building grammars, aligning), a crash of
the engine (a segmentation fault in a grammar library, an OOM kill, vLLM's own timeout) must not
take the run with it, and a dead engine is replaced by starting a fresh process
(``supervisor``). Its ``pid`` is the engine's: killing it is what the restart tests do.

The process is started as a fresh interpreter (not ``multiprocessing``'s spawn, which imports the
caller's main module again and so needs an ``if __name__ == "__main__":`` guard in every script).
It connects back over a ``multiprocessing.connection`` on a Unix socket in a private temporary
folder, with a random key. Messages, first the engine settings, then to the process: ``("begin", deterministic,
group_window)``, ``("submit", [StreamItem])``, ``("flush",)``, ``("end",)``, ``("withdraw",)``,
``("call", id, name)``
(``reset_prefix_cache``), ``("shutdown",)``. From it: ``("ready", info)`` or ``("failed", message)``
once, then ``("out", LoopOutput)``, ``("reply", id, result)`` and, when the engine dies,
``("dead", reason)`` before the process exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from multiprocessing.connection import Client, Listener
from typing import Any

from ..config import VLLMConfig
from ..exceptions import ModelNotLoadedError

__all__ = ["EngineProcess"]

logger = logging.getLogger(__name__)

Message = tuple[Any, ...]
_CALLS = ("reset_prefix_cache",)
# The engine process imports this very copy of vllm_extract, whatever the working folder holds.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BOOT = "import sys; sys.path.insert(0, {root!r}); from vllm_extract.clients.engine_process import main; main()"


def _main(conn: Any) -> None:  # pragma: no cover - runs in the engine process
    """The engine process: build the engine, report ``ready``, run the loop until shutdown."""
    config, model_path, max_model_len = conn.recv()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .engine_build import build_llm
    from .engine_loop import EngineLoop

    try:
        llm, cpu = build_llm(config, model_path, max_model_len)
    except BaseException as exc:  # noqa: BLE001 - reported to the driver, which raises it
        conn.send(("failed", getattr(exc, "message", None) or str(exc), getattr(exc, "hint", None)))
        return
    from ..extract.tokens import HFTokenizer

    tokenizer = HFTokenizer(llm.get_tokenizer(), name=model_path)
    loop = EngineLoop(llm, config, tokenize=tokenizer.encode_chat)
    send_lock = threading.Lock()

    def send(message: Message) -> None:
        with send_lock:
            conn.send(message)

    info = {
        "pid": os.getpid(),
        "max_model_len": loop.max_model_len,
        "cpu": cpu,
        "dtype": str(llm.model_config.dtype).removeprefix("torch."),
        "max_num_batched_tokens": int(llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens),
        "block_size": int(llm.llm_engine.vllm_config.cache_config.block_size),
    }
    send(("ready", info))

    def read() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                os._exit(0)  # the driver is gone
            kind = message[0]
            if kind == "submit":
                loop.submit(message[1])
            elif kind == "begin":
                loop.begin(deterministic=message[1], group_window=message[2])
            elif kind == "flush":
                loop.flush()
            elif kind == "end":
                loop.end()
            elif kind == "withdraw":
                loop.withdraw()
            elif kind == "call" and message[2] in _CALLS:
                loop.call(getattr(llm, message[2]), _replier(send, message[1]))
            elif kind == "shutdown":
                loop.stop()
                return

    threading.Thread(target=read, name="engine-inbox", daemon=True).start()
    try:
        loop.run(lambda out: send(("out", out)))
    except BaseException as exc:  # noqa: BLE001 - the engine is dead: say why, then exit
        try:
            send(("dead", f"{type(exc).__name__}: {exc}"))
        finally:
            os._exit(1)
    with contextlib.suppress(Exception):  # exiting anyway
        llm.llm_engine.engine_core.shutdown()


def _replier(send: Callable[[Message], None], call_id: int) -> Callable[[Any], None]:
    def reply(result: Any) -> None:
        send(("reply", call_id, result))

    return reply


class EngineProcess:
    """The driver's handle on one engine process. ``start()`` (blocking: spawns it and waits until
    the engine is loaded) returns the ``ready`` info, or raises ``ModelNotLoadedError`` with the
    engine's own message. Then ``send`` messages; every message from the process (and a final
    ``("dead", reason)`` when it exits unasked) goes to ``on_message`` from a reader thread."""

    def __init__(self, config: VLLMConfig, model_path: str, max_model_len: int | None) -> None:
        self.config = config
        self.model_path = model_path
        self.max_model_len = max_model_len
        self.info: dict[str, Any] = {}
        self._conn: Any = None
        self._process: Any = None
        self._closing = False
        self._send_lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, on_message: Callable[[Message], None]) -> dict[str, Any]:
        folder = tempfile.mkdtemp(prefix="vllm-extract-engine-")
        address = os.path.join(folder, "socket")
        key = secrets.token_bytes(32)
        listener = Listener(address, family="AF_UNIX", authkey=key)
        try:
            env = dict(os.environ, VLLM_EXTRACT_ENGINE_ADDRESS=address, VLLM_EXTRACT_ENGINE_KEY=key.hex())
            process = subprocess.Popen([sys.executable, "-c", _BOOT.format(root=_PACKAGE_ROOT)], env=env)
            self._process = process
            conn = self._accept(listener, process)
        finally:
            listener.close()
            shutil.rmtree(folder, ignore_errors=True)
        conn.send((self.config, self.model_path, self.max_model_len))
        self._conn = conn
        try:
            first = conn.recv()
        except (EOFError, OSError):
            process.wait()
            raise ModelNotLoadedError(
                f"the engine process for {self.model_path!r} exited while loading (exit code {process.returncode})",
                hint="see the engine log for vLLM's own message; check free memory",
            ) from None
        if first[0] != "ready":
            process.wait(30)
            raise ModelNotLoadedError(first[1], hint=first[2])
        self.info = first[1]
        threading.Thread(target=self._read, args=(conn, on_message), name="engine-outbox", daemon=True).start()
        return self.info

    @staticmethod
    def _accept(listener: Any, process: subprocess.Popen[bytes]) -> Any:
        """The engine process's connection; raises ``ModelNotLoadedError`` when it exits first."""
        result: list[Any] = []
        thread = threading.Thread(target=lambda: result.append(listener.accept()), daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
            if process.poll() is not None and thread.is_alive():
                raise ModelNotLoadedError(
                    f"the engine process exited before it started (exit code {process.returncode})",
                    hint="see the engine log; check that vllm-extract is importable by this Python",
                )
        return result[0]

    def _read(self, conn: Any, on_message: Callable[[Message], None]) -> None:
        dead_said = False
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            dead_said = dead_said or message[0] == "dead"
            on_message(message)
        if not self._closing and not dead_said:
            code = self._process.wait()
            on_message(("dead", f"the engine process (pid {self.pid}) exited with code {code}"))

    def send(self, message: Message) -> bool:
        """Send a message; False when the process is gone (its death is reported separately)."""
        with self._send_lock:
            try:
                self._conn.send(message)
            except (OSError, ValueError, BrokenPipeError):
                return False
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the process to shut down, then end it if it does not."""
        if self._process is None:
            return
        self._closing = True
        self.send(("shutdown",))
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        with contextlib.suppress(OSError):
            self._conn.close()
        self._process = None

    def kill(self) -> None:
        """End the process at once (its death is then reported to ``on_message``)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()


def main() -> None:  # pragma: no cover - the engine process's entry point
    address = os.environ.pop("VLLM_EXTRACT_ENGINE_ADDRESS")
    key = bytes.fromhex(os.environ.pop("VLLM_EXTRACT_ENGINE_KEY"))
    _main(Client(address, family="AF_UNIX", authkey=key))
