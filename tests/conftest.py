"""Shared fixtures. One vLLM engine per test session for most tests (``direct_client``, prefix
caching off), a second for the tests that need prefix caching or the crash seam (``cached_client``),
one real OpenAI-compatible server per session (``vllm_server``, from fixtures_server), all on the
embedded tiny model."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from fixtures_server import *  # noqa: F403

from vllm_extract.clients.direct import DirectVLLMClient
from vllm_extract.clients.engine_loop import CRASH_ENV
from vllm_extract.config import VLLMConfig
from vllm_extract.engine.hardware import choose_dtype
from vllm_extract.engine.machine_facts import read_machine_facts

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Small budgets keep the tiny model (which repeats itself until max_tokens) fast on 2 cores.
TEST_MAX_TOKENS = 96


def engine_config(model: str | Path, **changes: object) -> VLLMConfig:
    """The engine settings every test engine uses (1 GiB of KV cache on the CPU backend).

    Prefix caching is off: the session's one engine serves hundreds of tests, and a prompt whose
    KV blocks come from the cache (computed earlier, in another batch) can differ in the last bits
    from one computed afresh, enough to flip a low-margin greedy choice of the tiny model. CI saw
    it once: two runs of the same job on the warm engine differed at one PDF. vLLM promises
    identical results only for identical batches (docs.vllm.ai, "Reproducibility"); with no
    cache state carried between runs, the tests that compare runs (same job twice, Ray against a
    local run) compare identical batches. A CLI run starts a fresh engine, so this does not arise.

    The dtype is this machine's automatic choice, as a CLI run's (float32 on a CPU without native
    bf16, where bf16 is emulated several times slower; issue 19).
    """
    values: dict[str, object] = {
        "model": str(model),
        "dtype": automatic_dtype(),
        "max_completion_tokens": TEST_MAX_TOKENS,
        "kv_cache_memory_bytes": 1 << 30,
        "enable_prefix_caching": False,
    }
    values.update(changes)
    return VLLMConfig(**values)  # type: ignore[arg-type]


def automatic_dtype() -> str:
    """The dtype a run's plan chooses on this machine (``engine.hardware.choose_dtype``)."""
    return choose_dtype(None, read_machine_facts()).dtype


@pytest.fixture(scope="session")
def direct_client(tiny_model_path: Path) -> Iterator[DirectVLLMClient]:
    """The one in-process engine of the test session."""
    client = DirectVLLMClient(engine_config(tiny_model_path))
    asyncio.run(client.connect())
    yield client
    asyncio.run(client.close())


@pytest.fixture(scope="session")
def cached_client(tiny_model_path: Path) -> Iterator[DirectVLLMClient]:
    """The session's second engine, for the tests that need prefix caching on (issue 22's shared
    prefix) or the crash seam (dead engines, ``test_engine_faults``). Its engine process starts
    with ``VLLM_EXTRACT_TEST_CRASH_ON=POISON`` (``clients.engine_loop``): it dies at a step holding
    a request whose id contains ``POISON``; every other request runs normally. The variable is set
    only while the engine starts (a restarted engine gets it from ``crash_seam``): left in the
    environment it would reach every later CLI run, which reads ``VLLM_EXTRACT_*`` as settings.
    Completion budget 32 tokens."""
    with crash_seam():
        client = DirectVLLMClient(engine_config(tiny_model_path, enable_prefix_caching=True, max_completion_tokens=32))
        asyncio.run(client.connect())
    try:
        yield client
    finally:
        asyncio.run(client.close())


@contextlib.contextmanager
def crash_seam() -> Iterator[None]:
    """``VLLM_EXTRACT_TEST_CRASH_ON=POISON`` for engine processes started inside the block."""
    previous = os.environ.get(CRASH_ENV)
    os.environ[CRASH_ENV] = "POISON"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CRASH_ENV, None)
        else:
            os.environ[CRASH_ENV] = previous


@pytest.fixture
def examples() -> Path:
    return EXAMPLES
