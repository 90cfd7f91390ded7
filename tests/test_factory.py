"""VLLMClientFactory and get_client_for_entity_extraction: choosing, falling back, naming causes."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from misbehaving_server import MisbehavingServer

from vllm_extract.clients import direct as direct_module
from vllm_extract.clients.base import VLLMClientInterface, VLLMClientType
from vllm_extract.clients.factory import VLLMClientFactory, get_client_for_entity_extraction
from vllm_extract.clients.http import HTTPVLLMClient
from vllm_extract.config import Settings, VLLMConfig
from vllm_extract.exceptions import ConfigurationError, ConnectionError
from vllm_extract.run.runner import RunOptions, open_run

T = TypeVar("T")
Factory = Callable[..., MisbehavingServer]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def make_and_close(**kwargs: Any) -> VLLMClientInterface:
    client = await VLLMClientFactory.create_client(**kwargs)
    await client.close()
    return client


async def backend_and_close(config: VLLMConfig, backend: str) -> VLLMClientInterface:
    client = await get_client_for_entity_extraction(config, backend)
    await client.close()
    return client


@pytest.fixture
def no_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM made unimportable."""
    monkeypatch.setitem(sys.modules, "vllm", None)


def fallback_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "falling back to HTTP" in r.getMessage()]


@pytest.mark.usefixtures("no_vllm")
def test_falls_back_to_http_when_vllm_missing(misbehaving_server: Factory, caplog: pytest.LogCaptureFixture) -> None:
    server = misbehaving_server()
    config = VLLMConfig(base_url=server.url)
    with caplog.at_level(logging.WARNING):
        client = run(make_and_close(config=config))
    assert isinstance(client, HTTPVLLMClient)
    (message,) = fallback_records(caplog)
    assert server.url in message and "vLLM is not importable" in message


@pytest.mark.slow
def test_falls_back_when_model_fails_to_load(
    misbehaving_server: Factory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture", "architectures": ')
    server = misbehaving_server()
    config = VLLMConfig(model=str(broken), base_url=server.url, max_model_len=1024)
    with caplog.at_level(logging.WARNING):
        client = run(make_and_close(config=config))
    assert isinstance(client, HTTPVLLMClient)
    (message,) = fallback_records(caplog)
    assert "direct client unavailable" in message and str(broken) in message


@pytest.mark.usefixtures("no_vllm")
def test_no_server_names_direct_cause() -> None:
    with pytest.raises(ConnectionError) as info:
        run(make_and_close(config=VLLMConfig()))
    assert "vLLM is not importable" in str(info.value)
    assert "--server URL" in str(info.value.hint)


def test_configuration_error_without_server_is_raised_as_is(tmp_path) -> None:
    settings = Settings(VLLMConfig(model=str(tmp_path / "missing" / "model")))
    with pytest.raises(ConfigurationError, match="does not exist"):
        run(open_run(settings, RunOptions(skip_gpu_check=True)))


@pytest.mark.usefixtures("no_vllm")
def test_fallback_disabled_names_direct_cause(misbehaving_server: Factory) -> None:
    server = misbehaving_server()
    with pytest.raises(ConnectionError, match="fallback to HTTP is disabled"):
        run(make_and_close(config=VLLMConfig(base_url=server.url), enable_fallback=False))
    assert server.chat_requests == 0 and not server.headers


@pytest.mark.usefixtures("no_vllm")
def test_both_failing_names_both_causes(dead_server_url: str) -> None:
    with pytest.raises(ConnectionError) as info:
        run(make_and_close(config=VLLMConfig(base_url=dead_server_url)))
    text = str(info.value)
    assert text.startswith("No vLLM client available: direct: ")
    assert "vLLM is not importable" in text
    assert f"http: no vLLM server answered: {dead_server_url}" in text


@pytest.mark.usefixtures("no_vllm")
def test_preferred_http_falls_back_to_direct_and_names_both(dead_server_url: str) -> None:
    with pytest.raises(ConnectionError) as info:
        run(make_and_close(preferred_type=VLLMClientType.HTTP_API, config=VLLMConfig(base_url=dead_server_url)))
    text = str(info.value)
    assert "http: no vLLM server answered" in text and "direct: vLLM is not importable" in text


def test_preferred_http_without_fallback_raises_its_error(dead_server_url: str) -> None:
    with pytest.raises(ConnectionError, match="no vLLM server answered"):
        run(
            make_and_close(
                preferred_type=VLLMClientType.HTTP_API,
                enable_fallback=False,
                config=VLLMConfig(base_url=dead_server_url),
            )
        )


def test_direct_client_used_when_it_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class FakeDirect(HTTPVLLMClient):
        client_type = VLLMClientType.DIRECT_API

        def __init__(self, config: VLLMConfig | None = None, **kwargs: Any) -> None:
            super().__init__(config)
            seen.update(kwargs)

        async def connect(self) -> bool:
            self.connected = True
            return True

    monkeypatch.setattr(direct_module, "DirectVLLMClient", FakeDirect)
    client = run(backend_and_close(VLLMConfig(), "auto"))
    assert isinstance(client, FakeDirect)
    client = run(get_client_for_entity_extraction(VLLMConfig(), "direct", model_path="/m", max_model_len=512))
    assert isinstance(client, FakeDirect) and seen == {"model_path": "/m", "max_model_len": 512}


def test_backend_http_only(misbehaving_server: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the direct client must not be tried")

    monkeypatch.setattr(direct_module, "DirectVLLMClient", fail)
    server = misbehaving_server()
    client = run(backend_and_close(VLLMConfig(base_url=server.url), "http"))
    assert isinstance(client, HTTPVLLMClient)
    with pytest.raises(ConfigurationError, match="no server URL configured"):
        run(backend_and_close(VLLMConfig(), "http"))


@pytest.mark.usefixtures("no_vllm")
def test_backend_direct_raises_its_own_error() -> None:
    from vllm_extract.exceptions import ModelNotLoadedError

    with pytest.raises(ModelNotLoadedError, match="vLLM is not importable"):
        run(backend_and_close(VLLMConfig(base_url="http://127.0.0.1:9"), "direct"))


def test_unknown_backend() -> None:
    with pytest.raises(ConfigurationError, match="unknown backend 'grpc'") as info:
        run(backend_and_close(VLLMConfig(), "grpc"))
    assert "auto, direct, http" in str(info.value.hint)


def test_create_config() -> None:
    config = VLLMClientFactory.create_config(base_url="http://127.0.0.1:8000", concurrency=4)
    assert config.server_urls() == ["http://127.0.0.1:8000"] and config.concurrency == 4
    with pytest.raises(ConfigurationError, match="invalid client setting"):
        VLLMClientFactory.create_config(no_such_setting=1)


# -- the one rule: open_client, which open_run uses too ------------------------------------------


def test_no_fallback_errors_and_gpu_errors_are_raised_as_is(misbehaving_server: Factory) -> None:
    from vllm_extract.clients.factory import open_client
    from vllm_extract.exceptions import BudgetError, GPUMemoryError

    async def budgets() -> VLLMClientInterface:
        raise BudgetError("no room for text")

    async def busy_gpu() -> VLLMClientInterface:
        raise GPUMemoryError("GPU 0 is 98.5% used")

    server = misbehaving_server()
    with pytest.raises(BudgetError):
        run(open_client("auto", VLLMConfig(base_url=server.url), direct=budgets, no_fallback=(BudgetError,)))
    assert server.chat_requests == 0 and not server.headers  # the server was never tried
    with pytest.raises(GPUMemoryError, match="GPU 0 is"):  # no server: the user's to fix (exit 3)
        run(open_client("auto", VLLMConfig(), direct=busy_gpu))


@pytest.mark.usefixtures("no_vllm")
def test_open_run_falls_back_through_the_factory(
    misbehaving_server: Factory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    server = misbehaving_server(tokenize=True)
    settings = Settings(VLLMConfig(model="org/not-here", base_url=server.url, max_model_len=4096))

    async def go() -> tuple[Any, VLLMClientInterface]:
        plan, client = await open_run(settings, RunOptions(skip_gpu_check=True))
        await client.close()
        return plan, client

    with caplog.at_level(logging.WARNING):
        plan, client = run(go())
    assert isinstance(client, HTTPVLLMClient) and client.client_type is VLLMClientType.HTTP_API
    (message,) = fallback_records(caplog)
    assert server.url in message and "vLLM is not importable" in message
    assert plan.max_model_len <= 4096
