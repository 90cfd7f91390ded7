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

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from misbehaving_server import MisbehavingServer

from vllm_extract.engine.server import LocalVLLMServer, free_port
from vllm_extract.exceptions import ConnectionError

__all__ = ["dead_server_url", "misbehaving_server", "tiny_model_path", "vllm_server"]

logger = logging.getLogger(__name__)

VLLM_STARTUP_TIMEOUT = 240.0
VLLM_MAX_MODEL_LEN = 8192
# vLLM on CPU sizes the KV cache from this (the default gpu_memory_utilization fails on CPU).
VLLM_KV_CACHE_BYTES = 1 << 30


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
    from vllm_extract.engine.models import prepare_tiny_model

    return prepare_tiny_model().path


@pytest.fixture(scope="session")
def vllm_server(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real vLLM OpenAI-compatible server on 127.0.0.1 with the tiny model, for the session."""
    log_path = tmp_path_factory.mktemp("vllm_server") / "server.log"
    server = LocalVLLMServer(
        tiny_model_path,
        max_model_len=VLLM_MAX_MODEL_LEN,
        kv_cache_memory_bytes=VLLM_KV_CACHE_BYTES,
        log_path=log_path,
        startup_timeout=VLLM_STARTUP_TIMEOUT,
        # The same scheduling limits as the session's direct engine (chunked prefill splits
        # prompts by this budget, and the split changes the numerics).
        extra_args=("--max-num-batched-tokens", "16384", "--max-num-seqs", "256"),
    )
    try:
        url = server.start()
    except ConnectionError as exc:
        pytest.fail(str(exc))
    logger.info("vLLM server up at %s after %.1f s", url, server.startup_seconds)
    try:
        yield url
    finally:
        server.stop()
