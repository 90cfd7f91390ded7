"""Choosing and connecting a client: the in-process engine first, an HTTP server as fallback.

``VLLMClientFactory.create_client`` returns a *connected* client. With the direct client preferred
and fallback enabled, a failure to load vLLM or the model (vLLM missing, model broken, not enough
memory) is logged with its reason and the HTTP client is tried against the configured servers.
When nothing works, ``ConnectionError`` names every cause.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from ..config import VLLMConfig
from ..exceptions import ConfigurationError, ConnectionError
from .base import VLLMClientInterface, VLLMClientType

__all__ = ["BACKENDS", "VLLMClientFactory", "get_client_for_entity_extraction"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "direct", "http")
_SERVER_HINT = "start a server with `vllm serve MODEL` and pass --server URL to fall back to HTTP"


def _reason(exc: BaseException) -> str:
    """One line for a failure: the error's own text (with its hint), else its class name."""
    text = str(exc).strip()
    return text or type(exc).__name__


class VLLMClientFactory:
    """Creates connected clients; see ``create_client``."""

    @staticmethod
    def create_config(**kwargs: Any) -> VLLMConfig:
        """A ``VLLMConfig`` from keyword arguments (validated like every other source)."""
        try:
            return VLLMConfig(**kwargs)
        except TypeError as exc:
            known = ", ".join(f.name for f in dataclasses.fields(VLLMConfig))
            raise ConfigurationError(f"invalid client setting: {exc}", hint=f"known settings: {known}") from exc

    @staticmethod
    async def create_direct_client(config: VLLMConfig | None = None, **direct_kwargs: Any) -> VLLMClientInterface:
        """A connected ``DirectVLLMClient`` (raises what its ``connect()`` raises)."""
        from .direct import DirectVLLMClient  # imported late: loading it must not need vLLM

        return await _connected(DirectVLLMClient(config, **direct_kwargs))

    @staticmethod
    async def create_http_client(config: VLLMConfig | None = None) -> VLLMClientInterface:
        """A connected ``HTTPVLLMClient`` (raises ConfigurationError / ConnectionError)."""
        from .http import HTTPVLLMClient

        return await _connected(HTTPVLLMClient(config))

    @staticmethod
    async def create_client(
        preferred_type: VLLMClientType = VLLMClientType.DIRECT_API,
        enable_fallback: bool = True,
        config: VLLMConfig | None = None,
        **direct_kwargs: Any,
    ) -> VLLMClientInterface:
        """A connected client of the preferred type, else (when enabled) of the other type."""
        config = config or VLLMConfig()
        factory = VLLMClientFactory
        urls = config.server_urls()
        if preferred_type is VLLMClientType.HTTP_API:
            try:
                return await factory.create_http_client(config)
            except Exception as exc:
                if not enable_fallback:
                    raise
                http_reason = _reason(exc)
            logger.warning("falling back to the direct client: HTTP client unavailable: %s", http_reason)
            try:
                return await factory.create_direct_client(config, **direct_kwargs)
            except Exception as exc:
                raise ConnectionError(
                    f"No vLLM client available: http: {http_reason}; direct: {_reason(exc)}",
                    base_url=urls[0] if urls else None,
                ) from exc

        try:
            return await factory.create_direct_client(config, **direct_kwargs)
        except Exception as exc:  # noqa: BLE001 - ImportError, ModelNotLoadedError, GPUMemoryError, anything else
            direct_error: Exception = exc
            direct_reason = _reason(exc)
        if not enable_fallback or not urls:
            if isinstance(direct_error, ConfigurationError):
                raise direct_error  # a wrong model name or setting is the user's to fix, not a fallback case
            why = "fallback to HTTP is disabled" if not enable_fallback else "no server URL is configured"
            raise ConnectionError(
                f"No vLLM client available: direct: {direct_reason} ({why})",
                hint=_SERVER_HINT,
            ) from direct_error
        logger.warning("falling back to HTTP (%s): direct client unavailable: %s", urls[0], direct_reason)
        try:
            return await factory.create_http_client(config)
        except Exception as exc:
            raise ConnectionError(
                f"No vLLM client available: direct: {direct_reason}; http: {_reason(exc)}",
                base_url=urls[0],
                hint="fix one of the two causes above",
            ) from exc


async def _connected(client: VLLMClientInterface) -> VLLMClientInterface:
    """``client`` after ``connect()``; closed again if connecting fails."""
    try:
        await client.connect()
    except BaseException:
        await client.close()
        raise
    return client


async def get_client_for_entity_extraction(
    config: VLLMConfig | None = None, backend: str = "auto", **direct_kwargs: Any
) -> VLLMClientInterface:
    """A connected client for extraction: ``auto`` (direct, then HTTP), ``direct`` or ``http``.

    ``direct_kwargs`` (``model_path``, ``max_model_len``) go to ``DirectVLLMClient``; the GPU
    pre-flight is not run here (``run.runner.open_run`` runs it before loading). ``direct`` and
    ``http`` raise their client's own error (ModelNotLoadedError, GPUMemoryError, ConnectionError,
    ConfigurationError), so its details survive.
    """
    if backend == "auto":
        return await VLLMClientFactory.create_client(VLLMClientType.DIRECT_API, True, config, **direct_kwargs)
    if backend == "direct":
        return await VLLMClientFactory.create_direct_client(config, **direct_kwargs)
    if backend == "http":
        return await VLLMClientFactory.create_http_client(config)
    raise ConfigurationError(f"unknown backend {backend!r}", hint=f"use one of: {', '.join(BACKENDS)}")
