"""Opening a client, the one path: the in-process engine first, an HTTP server as fallback.

``open_client(backend, config, direct=...)`` holds the one fallback rule; ``run.runner.open_run``
(what ``vllm-extract run`` uses) and the public ``get_client_for_entity_extraction`` and
``VLLMClientFactory.create_client`` go through it. For ``auto``: a failure to open the direct
client (vLLM missing, model broken, GPU pre-flight refused, not enough memory) is logged with its
reason and the HTTP client is tried against the configured servers. With no server configured a
``ConfigurationError`` or ``GPUMonitorError`` is raised as is (the user's to fix; exit 2 or 3),
anything else as a ``ConnectionError`` naming it; when the servers fail too, a
``ConnectionError`` names both causes (a ``ConfigurationError`` of the server side, such as a
model it does not serve, is raised as is). The caller names the errors that are no fallback case
(``no_fallback``: budgets that fit no server either, a refused resume). Ray replicas are opened by
``create_ray_client`` (``--engine ray`` is a choice of engine, not a fallback).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..config import VLLMConfig
from ..exceptions import ConfigurationError, ConnectionError, GPUMonitorError
from .base import ModelResolver, VLLMClientInterface, VLLMClientType

if TYPE_CHECKING:
    from .ray import RayOptions

__all__ = ["BACKENDS", "VLLMClientFactory", "get_client_for_entity_extraction", "open_client"]

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

        return await open_client(
            "auto",
            config,
            direct=lambda: factory.create_direct_client(config, **direct_kwargs),
            enable_fallback=enable_fallback,
        )

    @staticmethod
    async def create_ray_client(
        config: VLLMConfig,
        *,
        model: str,
        max_model_len: int | None,
        options: RayOptions,
        resolve: ModelResolver,
    ) -> VLLMClientInterface:
        """A connected ``RayVLLMClient`` (engine replicas on a Ray cluster; see ``clients.ray``).
        Raises ``ConfigurationError`` (Ray missing) and what its ``connect()`` raises."""
        from .ray import RayVLLMClient

        return await _connected(
            RayVLLMClient(config, model=model, max_model_len=max_model_len, options=options, resolve=resolve)
        )


async def open_client(
    backend: str,
    config: VLLMConfig,
    *,
    direct: Callable[[], Awaitable[VLLMClientInterface]] | None = None,
    enable_fallback: bool = True,
    no_fallback: tuple[type[BaseException], ...] = (),
) -> VLLMClientInterface:
    """A connected client for ``backend``: ``auto`` (direct, then HTTP; see the module for the
    rule), ``direct`` or ``http``.

    ``direct`` opens the direct client (default: ``create_direct_client(config)``); the run layer
    passes one that resolves the model, plans and runs the GPU pre-flight first, so a failure there
    falls back too. Errors of a ``no_fallback`` class are raised as they are. Raises
    ``ConfigurationError`` for an unknown backend; ``direct`` and ``http`` raise their client's own
    error (``ModelNotLoadedError``, ``GPUMemoryError``, ``ConnectionError``, ``ConfigurationError``).
    """
    if backend not in BACKENDS:
        raise ConfigurationError(f"unknown backend {backend!r}", hint=f"use one of: {', '.join(BACKENDS)}")
    open_direct = direct or (lambda: VLLMClientFactory.create_direct_client(config))
    if backend == "http":
        return await VLLMClientFactory.create_http_client(config)
    if backend == "direct":
        return await open_direct()
    urls = config.server_urls()
    try:
        return await open_direct()
    except no_fallback:
        raise
    except Exception as exc:  # noqa: BLE001 - ImportError, ModelNotLoadedError, GPUMemoryError, anything else
        direct_error: Exception = exc
        direct_reason = _reason(exc)
    if not enable_fallback or not urls:
        if isinstance(direct_error, ConfigurationError | GPUMonitorError):
            raise direct_error  # a wrong setting or a busy GPU is the user's to fix, not a fallback case
        why = "fallback to HTTP is disabled" if not enable_fallback else "no server URL is configured"
        raise ConnectionError(
            f"No vLLM client available: direct: {direct_reason} ({why})",
            hint=_SERVER_HINT,
        ) from direct_error
    logger.warning("falling back to HTTP (%s): direct client unavailable: %s", urls[0], direct_reason)
    try:
        return await VLLMClientFactory.create_http_client(config)
    except ConfigurationError:
        raise  # the server answered: it serves another model, or a setting is wrong
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
    config = config or VLLMConfig()
    return await open_client(
        backend, config, direct=lambda: VLLMClientFactory.create_direct_client(config, **direct_kwargs)
    )
