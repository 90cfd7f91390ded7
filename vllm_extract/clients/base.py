"""What every client shares: request/response types, statistics, and the client interface.

The pipeline talks only to ``VLLMClientInterface``; it never imports vllm or httpx.
"""

from __future__ import annotations

import abc
import enum
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..config import ENFORCED_SEED, ENFORCED_TEMPERATURE, VLLMConfig

if TYPE_CHECKING:
    from .stream import RequestStream

__all__ = [
    "ClientStats",
    "FollowUp",
    "ModelResolver",
    "ResolvedModelLike",
    "ResponseCallback",
    "VLLMClientInterface",
    "VLLMClientType",
    "VLLMRequest",
    "VLLMResponse",
    "enforce_sampling",
]

logger = logging.getLogger(__name__)

ResponseCallback = Callable[["VLLMResponse"], None]


class ResolvedModelLike(Protocol):
    """What a client needs of a resolved ``--model`` (``run.plan.ResolvedModel`` is one): the local
    folder or hub id to load, and its revision when known. Clients never resolve a model themselves:
    the run layer resolves it, or hands them a ``ModelResolver``."""

    @property
    def path(self) -> str: ...

    @property
    def revision(self) -> str | None: ...


ModelResolver = Callable[[str], ResolvedModelLike]
"""Resolves a ``--model`` value where it runs (``run.plan.resolve_model``); passed to Ray replicas."""


class VLLMClientType(enum.Enum):
    """Which transport a client uses: the run report's ``backend`` and the panel show the value.

    ``DIRECT_API``: an engine process on this machine; ``RAY``: engine replicas on a Ray cluster
    (the same engine loop); both take the prompts' token ids. ``HTTP_API``: OpenAI-compatible
    servers."""

    DIRECT_API = "direct"
    HTTP_API = "http"
    RAY = "ray"


@dataclass(frozen=True)
class FollowUp:
    """Further passes over a request (``--passes``): after each answer the model is asked again
    with ``message`` as a new user turn, the conversation so far (prompt and answer) before it.

    ``suffix_ids``: the token ids that follow an answer in the model's chat template, ending with
    the next assistant turn's opening (the plan renders them once), so a transport that sends token
    ids builds the next prompt as ``prompt + answer + suffix`` without tokenizing the answer again.
    ``max_tokens``: the next pass's completion budget (None: the request's). ``passes``: further
    passes left (at least 1). A pass follows only a complete, successful answer."""

    message: str
    suffix_ids: list[int] | None = None
    max_tokens: int | None = None
    passes: int = 1


@dataclass
class VLLMRequest:
    """One chat completion request.

    Output constraints go through vLLM structured outputs: ``grammar`` (a Lark grammar run by
    llguidance; grounded decoding) when set, else ``json_schema``. A server that refuses grammars
    gets ``json_schema`` instead. ``prompt_token_ids``, when the caller already rendered and
    tokenized the chat (the pipeline does, to count exactly), is what the engine clients (direct,
    Ray) send; the HTTP client sends it too, to ``/v1/completions``, and sends ``messages`` to
    ``/v1/chat/completions`` only when it has no token ids (no local tokenizer: the plan then leaves
    them out).

    ``retry_max_tokens``: an answer cut at ``max_tokens`` is asked again once with this budget
    (``followups``). ``followup``: further passes (``FollowUp``).
    """

    messages: list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    grammar: str | None = None
    stop: list[str] | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    prompt_token_ids: list[int] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    retry_max_tokens: int | None = None
    followup: FollowUp | None = None


@dataclass
class VLLMResponse:
    """The result of one request. A failed request has ``error`` set and empty ``content``."""

    request_id: str
    content: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    response_time_ms: float = 0.0
    model: str = ""
    error: str | None = None
    error_kind: str | None = None
    cached_tokens: int = 0
    attempts: int = 1
    passes: list[VLLMResponse] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def success(self) -> bool:
        return self.error is None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def enforce_sampling(request: VLLMRequest, config: VLLMConfig, *, warn: bool = True) -> tuple[float, int, int]:
    """The (temperature, seed, max_tokens) actually used: temperature 0.0 and seed 42, always.

    A request asking for anything else is overridden and (with ``warn``) a warning is logged.
    """
    if not warn:
        return ENFORCED_TEMPERATURE, ENFORCED_SEED, request.max_tokens or config.max_completion_tokens
    if request.temperature not in (None, ENFORCED_TEMPERATURE):
        logger.warning(
            "request %s asked for temperature %s; overridden to %s (enforced)",
            request.request_id,
            request.temperature,
            ENFORCED_TEMPERATURE,
        )
    if request.seed not in (None, ENFORCED_SEED):
        logger.warning(
            "request %s asked for seed %s; overridden to %s (enforced)",
            request.request_id,
            request.seed,
            ENFORCED_SEED,
        )
    max_tokens = request.max_tokens or config.max_completion_tokens
    return ENFORCED_TEMPERATURE, ENFORCED_SEED, max_tokens


class ClientStats:
    """Thread-safe counters behind ``get_stats()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests_processed = 0
        self.successful_generations = 0
        self.failed_generations = 0
        self.total_response_time_ms = 0.0
        self.total_tokens_generated = 0
        self.total_prompt_tokens = 0
        self.context_overflows = 0
        self.gpu_memory_alerts = 0
        self.retries = 0
        self.truncated_responses = 0

    def record(self, response: VLLMResponse) -> None:
        with self._lock:
            self.requests_processed += 1
            self.total_response_time_ms += response.response_time_ms
            self.total_prompt_tokens += response.prompt_tokens
            self.total_tokens_generated += response.completion_tokens
            if response.success:
                self.successful_generations += 1
                if response.truncated:
                    self.truncated_responses += 1
            else:
                self.failed_generations += 1
                if response.error_kind == "context_overflow":
                    self.context_overflows += 1

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def snapshot(self, client_type: VLLMClientType) -> dict[str, Any]:
        with self._lock:
            done = self.requests_processed
            return {
                "client_type": client_type.value,
                "requests_processed": done,
                "successful_generations": self.successful_generations,
                "failed_generations": self.failed_generations,
                "average_response_time_ms": (self.total_response_time_ms / done) if done else 0.0,
                "total_tokens_generated": self.total_tokens_generated,
                "total_prompt_tokens": self.total_prompt_tokens,
                "context_overflows": self.context_overflows,
                "gpu_memory_alerts": self.gpu_memory_alerts,
                "retries": self.retries,
                "truncated_responses": self.truncated_responses,
            }


class VLLMClientInterface(abc.ABC):
    """The interface every client implements: ``DirectVLLMClient`` (an engine process on this
    machine), ``RayVLLMClient`` (engine replicas on Ray) and ``HTTPVLLMClient`` (servers)."""

    client_type: VLLMClientType

    def __init__(self, config: VLLMConfig | None = None) -> None:
        self.config = config or VLLMConfig()
        self.stats = ClientStats()
        self.connected = False
        # What the engine loaded, as it reports it once connected (``dtype``, ``max_num_batched_tokens``,
        # ``max_model_len``, ``pid``, ...); empty for a server, whose engine is not known here.
        self.engine_info: dict[str, Any] = {}

    @abc.abstractmethod
    async def connect(self) -> bool:
        """Load the engine or reach the server. Returns True when ready; raises on a clear failure."""

    @property
    def capacity(self) -> int:
        """Requests the engine side works on at once (``max_num_seqs`` per engine; for a server,
        ``concurrency``): what a run keeps submitted to stay ahead of it."""
        return self.config.max_num_seqs

    def open_stream(
        self,
        *,
        deterministic: bool = True,
        group_window: int = 256,
        encode: Callable[[str], list[int]] | None = None,
    ) -> RequestStream:
        """A stream for one run (``clients.stream``). ``deterministic`` and ``group_window`` shape an
        engine's feed (``clients.engine_loop``); ``encode`` (text to token ids) serves transports
        that build a later pass's prompt from text. This default serves transports that answer one
        request at a time through ``generate_one``, ``capacity`` at once."""
        from .stream import TaskStream

        return TaskStream(self.generate_one, concurrency=self.capacity, on_response=self.stats.record, encode=encode)

    async def generate_one(self, request: VLLMRequest) -> VLLMResponse:
        """Generate for one request (one attempt; no retry of a cut answer). Transports that answer
        one request at a time implement it; it never raises for a bad request: the response
        carries ``error``."""
        raise NotImplementedError(f"{type(self).__name__} answers through open_stream only")

    async def generate_batch(
        self, requests: list[VLLMRequest], on_response: ResponseCallback | None = None
    ) -> list[VLLMResponse]:
        """Generate for every request through one stream; one response per request, in order.
        Never raises for one bad request: that request's response carries ``error``.
        ``on_response`` is called once per request as it finishes."""
        from .stream import StreamItem

        if not requests:
            return []
        responses: list[VLLMResponse | None] = [None] * len(requests)
        async with self.open_stream() as stream:
            await stream.submit([StreamItem(i, r, group=0, group_size=len(requests)) for i, r in enumerate(requests)])
            stream.end()
            async for result in stream:
                responses[result.key] = result.response
                if on_response is not None:
                    on_response(result.response)
        return [r for r in responses if r is not None]

    async def generate_chat_completion(self, request: VLLMRequest) -> VLLMResponse:
        """Generate for one request (a batch of one)."""
        (response,) = await self.generate_batch([request])
        return response

    @abc.abstractmethod
    def get_tokenizer(self) -> Any:
        """A ``extract.tokens.Tokenizer`` for exact counts with this client's model."""

    @property
    def max_model_len(self) -> int:
        """The context length the engine or server holds (its limit, not only the configured one)."""
        return self.config.max_model_len

    def get_stats(self) -> dict[str, Any]:
        return self.stats.snapshot(self.client_type)

    async def close(self) -> None:
        """Release the engine or connections."""
        self.connected = False

    async def __aenter__(self) -> VLLMClientInterface:
        if not self.connected:
            await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
