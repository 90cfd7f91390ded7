"""HTTP transport: ``HTTPVLLMClient`` talks to one or more OpenAI-compatible vLLM servers.

One pooled ``httpx.AsyncClient`` carries every request. ``connect()`` checks ``/health`` and
``/v1/models`` on each configured server and discovers the served model and its context length.
``generate_one()`` sends a chat completion (or, for a request that carries the prompt's token ids,
a completion of those ids); a run's stream (``stream.TaskStream``) keeps ``concurrency`` of them
in flight, round-robin over healthy
servers, retrying transient faults (connection errors, timeouts, dropped connections, 429, 5xx)
with exponential backoff and full jitter. A bad request never raises: its response carries
``error`` and ``error_kind`` (``http_4xx``, ``context_overflow``, ``http_retry_exhausted``,
``bad_response``).

Grounded decoding sends the request's Lark grammar as ``structured_outputs.grammar`` (vLLM's
``auto`` backend runs it on llguidance). A server that refuses grammars is sent the JSON schema
instead for the rest of the run, with one warning naming the server.

``RemoteTokenizer`` (``remote_tokenizer.py``) counts tokens with the server's ``/tokenize``
endpoint, so counts are exact even when the model's files are not on this machine.

``httpx`` is imported where it is used, not with this module: it imports rich (for its own CLI)
when rich is installed, and ``import vllm_extract`` loads neither rich nor Typer.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config import VLLMConfig
from ..exceptions import ConfigurationError, ConnectionError
from ..extract.tokens import Tokenizer
from .base import (
    VLLMClientInterface,
    VLLMClientType,
    VLLMRequest,
    VLLMResponse,
    enforce_sampling,
)
from .remote_tokenizer import CONNECT_TIMEOUT, RemoteTokenizer, describe_error, error_text

if TYPE_CHECKING:
    import httpx

__all__ = ["HTTPVLLMClient"]

logger = logging.getLogger(__name__)


# A 400 answer naming one of these means the server cannot run the request's grammar.
_GRAMMAR_REFUSED = re.compile(r"grammar|structured.?output|guidance|lark|guided", re.IGNORECASE)
_OVERFLOW = re.compile(
    r"maximum context length|maximum model length|prompt is too long|too many (input )?tokens"
    r"|reduce the length of the input",
    re.IGNORECASE,
)


@dataclass
class _Server:
    """One configured server and what is known about it."""

    url: str
    model: str | None = None
    max_model_len: int | None = None
    down_until: float = 0.0
    reason: str = ""
    grammar_ok: bool = True


class _AttemptError(Exception):
    """One failed attempt: whether to retry, a server-requested delay, and the error kind."""

    def __init__(self, message: str, *, retry: bool, kind: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.kind = kind
        self.retry_after = retry_after


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP date), if any."""
    raw = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _choose_model(config: VLLMConfig, entries: list[dict[str, Any]], url: str) -> tuple[str, int | None]:
    """The served model to use and its max_model_len, following the documented order."""
    served = [str(e.get("id")) for e in entries if e.get("id")]
    by_id = {str(e.get("id")): e for e in entries}
    if not served:
        raise ConfigurationError(f"server {url} serves no model", hint="check the server's --model")
    chosen: str | None = None
    if config.model_id and config.model_id in by_id:
        chosen = config.model_id
    elif len(served) == 1:
        chosen = served[0]
        if config.model_id:
            logger.warning("model_id %r is not served by %s; using its only model %r", config.model_id, url, chosen)
    elif config.model in by_id:
        chosen = config.model
    else:
        roots = [e for e in entries if e.get("root") == config.model]
        if len(roots) == 1:
            chosen = str(roots[0]["id"])
    if chosen is None:
        wanted = config.model_id or config.model
        raise ConfigurationError(
            f"server {url} serves {', '.join(served)}, not {wanted!r}",
            hint="pass --model-id with one of the served names",
        )
    length = by_id[chosen].get("max_model_len")
    return chosen, int(length) if isinstance(length, int) and length > 0 else None


class HTTPVLLMClient(VLLMClientInterface):
    """A client for OpenAI-compatible vLLM servers (``vllm serve``)."""

    client_type = VLLMClientType.HTTP_API

    def __init__(self, config: VLLMConfig | None = None, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(config)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._servers = [_Server(url) for url in self.config.server_urls()]
        self._origins = {_origin(s.url) for s in self._servers}
        self._rr = itertools.count()
        self._tokenizer: Tokenizer | None = None
        self.model_name: str | None = None
        self.server_max_model_len: int | None = None
        # Retry policy; attributes so tests (and callers) can shorten them.
        self.backoff_base = 0.5
        self.backoff_cap = 20.0
        self.server_cooldown = 30.0

    # -- connection ---------------------------------------------------------------------------
    def _headers(self, url: str) -> dict[str, str]:
        """The API key goes only to the configured servers, never to any other host."""
        if self.config.api_key and _origin(url) in self._origins:
            return {"Authorization": f"Bearer {self.config.api_key}"}
        return {}

    def _http(self) -> httpx.AsyncClient:
        """The pooled client, (re)created for the running event loop (connections are per loop)."""
        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._client_loop is not loop:
            n = self.config.concurrency
            timeout = self.config.http_timeout
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
                limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
                transport=self._transport,
                follow_redirects=False,
            )
            self._client_loop = loop
        return self._client

    async def _probe(self, server: _Server) -> None:
        client = self._http()
        health = await client.get(server.url + "/health", headers=self._headers(server.url))
        if health.status_code != 200:
            raise _AttemptError(f"/health answered {health.status_code}", retry=False, kind="http")
        models = await client.get(server.url + "/v1/models", headers=self._headers(server.url))
        try:
            entries = list(models.json()["data"]) if models.status_code == 200 else None
        except (ValueError, KeyError, TypeError):
            entries = None
        if entries is None:
            why = f"/v1/models answered {models.status_code}: {error_text(models)}"
            raise _AttemptError(why, retry=False, kind="http")
        server.model, server.max_model_len = _choose_model(self.config, entries, server.url)

    async def connect(self) -> bool:
        """Check every configured server; at least one must answer. Returns True."""
        import httpx

        if not self._servers:
            raise ConfigurationError(
                "no server URL configured for the HTTP client",
                hint="pass --server URL (e.g. --server http://127.0.0.1:8000)",
            )
        config_errors: list[ConfigurationError] = []
        for server in self._servers:
            try:
                await self._probe(server)
            except ConfigurationError as exc:
                config_errors.append(exc)
                self._mark_down(server, str(exc))
                continue
            except (httpx.HTTPError, _AttemptError) as exc:
                self._mark_down(server, describe_error(exc))
                continue
            if self.model_name is None:
                self.model_name, self.server_max_model_len = server.model, server.max_model_len
            elif server.model != self.model_name:
                self._mark_down(server, f"serves {server.model!r}, not {self.model_name!r}")
                continue
            server.down_until, server.reason = 0.0, ""
        healthy = [s for s in self._servers if not s.reason]
        if not healthy:
            if config_errors:
                raise config_errors[0]
            failures = ", ".join(f"{s.url} ({s.reason})" for s in self._servers)
            raise ConnectionError(
                f"no vLLM server answered: {failures}",
                base_url=self._servers[0].url,
                hint="start one with `vllm serve MODEL` or check --server",
            )
        logger.info(
            "connected to %s serving %s (max_model_len %s)",
            ", ".join(s.url for s in healthy),
            self.model_name,
            self.server_max_model_len,
        )
        self.connected = True
        return True

    def _mark_down(self, server: _Server, reason: str) -> None:
        now = time.monotonic()
        was_up = server.down_until <= now
        server.down_until = now + self.server_cooldown
        server.reason = reason
        if was_up:
            logger.warning("server %s marked down for %.0f s: %s", server.url, self.server_cooldown, reason)

    def _pick_server(self) -> _Server:
        """The next healthy server round-robin; when all are down, the one back soonest."""
        now = time.monotonic()
        healthy = [s for s in self._servers if s.down_until <= now]
        if healthy:
            return healthy[next(self._rr) % len(healthy)]
        return min(self._servers, key=lambda s: s.down_until)

    @property
    def max_model_len(self) -> int:
        if self.server_max_model_len:
            return min(self.config.max_model_len, self.server_max_model_len)
        return self.config.max_model_len

    # -- generation ---------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.config.concurrency

    async def generate_one(self, request: VLLMRequest) -> VLLMResponse:
        """One request, with retries on transient faults (see the module docstring); never raises
        for a bad request: its response carries ``error`` and ``error_kind``."""
        if not self.connected:
            await self.connect()
        return await self._generate_one(request)

    def _body(self, request: VLLMRequest, model: str) -> dict[str, Any]:
        temperature, seed, max_tokens = enforce_sampling(request, self.config)
        # vLLM rejects max_tokens >= the server's context outright; it clamps anything smaller.
        max_tokens = min(max_tokens, self.max_model_len - 1)
        # Token ids go to /v1/completions as they are: the prompt the run counted, with document
        # text encoded as data (a chat marker inside a document never becomes a control token).
        prompt: dict[str, Any] = (
            {"prompt": request.prompt_token_ids} if request.prompt_token_ids else {"messages": request.messages}
        )
        body: dict[str, Any] = {
            "model": model,
            **prompt,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
        }
        if request.stop:
            body["stop"] = request.stop
        if request.grammar is not None:
            body["structured_outputs"] = {"grammar": request.grammar}
        elif request.json_schema is not None:
            body["structured_outputs"] = _schema_outputs(request.json_schema)
        return body

    async def _generate_one(self, request: VLLMRequest) -> VLLMResponse:
        start = time.perf_counter()
        preferred = self._body(request, self.model_name or self.config.served_model)
        fallback = preferred
        if request.grammar is not None and request.json_schema is not None:
            fallback = {**preferred, "structured_outputs": _schema_outputs(request.json_schema)}
        attempts = 0
        while True:
            server = self._pick_server()
            attempts += 1
            body = preferred if server.grammar_ok else fallback
            try:
                response = await self._attempt(server, body, request.request_id)
                response.response_time_ms = (time.perf_counter() - start) * 1000
                return response
            except _AttemptError as exc:
                failure = exc
            if failure.kind == "grammar_refused" and server.grammar_ok:
                server.grammar_ok = False
                logger.warning(
                    "server %s refused grounded decoding (%s); sending it the JSON schema for the rest of the run",
                    server.url,
                    failure,
                )
                attempts -= 1
                continue
            if failure.retry and attempts <= self.config.max_retries:
                delay = self._backoff(attempts - 1, failure.retry_after)
                logger.info("retrying request %s in %.2f s: %s", request.request_id, delay, failure)
                self.stats.add("retries")
                await asyncio.sleep(delay)
                continue
            exhausted = failure.retry
            return VLLMResponse(
                request.request_id,
                error=f"gave up after {attempts} attempts: {failure}" if exhausted else str(failure),
                error_kind="http_retry_exhausted" if exhausted else failure.kind,
                response_time_ms=(time.perf_counter() - start) * 1000,
                model=body["model"],
            )

    def _backoff(self, retry_index: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.backoff_cap, retry_after)
        return random.uniform(0.0, min(self.backoff_cap, self.backoff_base * 2**retry_index))

    async def _attempt(self, server: _Server, body: dict[str, Any], request_id: str) -> VLLMResponse:
        import httpx

        url = server.url + ("/v1/completions" if "prompt" in body else "/v1/chat/completions")
        try:
            http = await self._http().post(url, json=body, headers=self._headers(url))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self._mark_down(server, describe_error(exc))
            raise _AttemptError(f"{server.url}: {describe_error(exc)}", retry=True, kind="connection") from exc
        except httpx.TransportError as exc:  # read timeout, dropped connection, protocol error
            raise _AttemptError(f"{server.url}: {describe_error(exc)}", retry=True, kind="transport") from exc
        status = http.status_code
        if status == 429 or status >= 500:
            raise _AttemptError(
                f"HTTP {status} from {server.url}: {error_text(http)}",
                retry=True,
                kind="http_retryable",
                retry_after=_retry_after(http),
            )
        if status >= 400:
            text = error_text(http)
            kind = "http_4xx"
            if status == 400 and _OVERFLOW.search(text):
                kind = "context_overflow"
            elif status == 400 and "structured_outputs" in body and "grammar" in body["structured_outputs"]:
                kind = "grammar_refused" if _GRAMMAR_REFUSED.search(text) else kind
            raise _AttemptError(f"HTTP {status} from {server.url}: {text}", retry=False, kind=kind)
        try:
            data = http.json()
            choice = data["choices"][0]
            content = (choice["text"] if "prompt" in body else choice["message"].get("content")) or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise _AttemptError(
                f"malformed completion from {server.url}: {exc!r}", retry=False, kind="bad_response"
            ) from exc
        server.reason = ""
        # usage is bookkeeping: a malformed block costs the counts, never the completion.
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        details = usage.get("prompt_tokens_details")
        return VLLMResponse(
            request_id,
            content=content,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            model=str(data.get("model") or body["model"]),
            cached_tokens=_count(details.get("cached_tokens")) if isinstance(details, dict) else 0,
        )

    # -- tokenizer & shutdown -----------------------------------------------------------------
    def get_tokenizer(self) -> Tokenizer:
        """The server's ``/tokenize`` (the run plan prefers the local tokenizer when the model
        folder is on this machine)."""
        if self._tokenizer is not None:
            return self._tokenizer
        server = next((s for s in self._servers if s.model and not s.reason), None) or (
            self._servers[0] if self._servers else None
        )
        if server is None:
            raise ConfigurationError("no server URL configured for the HTTP client", hint="pass --server URL")
        remote = RemoteTokenizer(
            server.url,
            self.model_name or self.config.served_model,
            api_key=self.config.api_key,
            timeout=min(self.config.http_timeout, 60.0),
        )
        remote.probe()
        self._tokenizer = remote
        return remote

    async def close(self) -> None:
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = self._client_loop = None
        if isinstance(self._tokenizer, RemoteTokenizer):
            self._tokenizer.close()
            self._tokenizer = None
        await super().close()


def _count(value: Any) -> int:
    """A token count from a usage block: a non-negative int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _schema_outputs(schema: dict[str, Any]) -> dict[str, Any]:
    """``structured_outputs`` for JSON-schema mode: compact JSON (no whitespace tokens)."""
    return {"json": schema, "disable_any_whitespace": True}
