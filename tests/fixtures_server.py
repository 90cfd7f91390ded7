"""Pytest fixtures for HTTP tests: a scriptable misbehaving server and a real vLLM server.

Import them from ``conftest.py`` with ``from fixtures_server import *``.

- ``misbehaving_server``: a factory; ``misbehaving_server(**kwargs)`` starts a
  ``MisbehavingServer`` on an ephemeral 127.0.0.1 port, stopped at the end of the test.
- ``dead_server_url``: ``http://127.0.0.1:<port>`` where nothing listens.
- ``vllm_server``: the real vLLM OpenAI server with the tiny model (session scope, ~30-60 s to
  start on CPU); yields its base URL. The log goes to a temporary file whose tail is shown when
  the server fails to start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from misbehaving_server import MisbehavingServer

__all__ = ["dead_server_url", "misbehaving_server", "tiny_model_path", "vllm_server"]

logger = logging.getLogger(__name__)

VLLM_STARTUP_TIMEOUT = 240.0
VLLM_MAX_MODEL_LEN = 8192
# vLLM on CPU sizes the KV cache from this (the default gpu_memory_utilization fails on CPU).
VLLM_KV_CACHE_BYTES = 1 << 30


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (and where nothing listens now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def misbehaving_server() -> Iterator[Callable[..., MisbehavingServer]]:
    started: list[MisbehavingServer] = []

    def make(**kwargs: Any) -> MisbehavingServer:
        server = MisbehavingServer(**kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def dead_server_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    from vllm_extract.models import prepare_tiny_model

    return prepare_tiny_model().path


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (API server + engine core), then SIGKILL if needed."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def vllm_server(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("vllm_server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_model_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(VLLM_MAX_MODEL_LEN),
        "--enforce-eager",
        "--seed",
        "42",
        "--kv-cache-memory-bytes",
        str(VLLM_KV_CACHE_BYTES),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = started + VLLM_STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"vLLM server exited with {process.returncode} while starting; log {log_path}:\n"
                    + _log_tail(log_path)
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"vLLM server did not answer /health within {VLLM_STARTUP_TIMEOUT:.0f} s; "
                    f"log {log_path}:\n" + _log_tail(log_path)
                )
            time.sleep(1.0)
        logger.info("vLLM server up at %s after %.1f s", url, time.monotonic() - started)
        yield url
    finally:
        _stop(process)
