"""The pre-flight: refuse to start vLLM when it would not fit in GPU (or, on CPU, host) memory.

``preflight`` checks every GPU the engines will use (or host RAM on the CPU backend) before the
engine loads, optionally waiting for memory to free up, and raises ``GPUMemoryError`` naming what
is short and who holds it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ...config import CPU_DEFAULT_KV_CACHE_BYTES, VLLMConfig
from ...events import MemoryReading
from ...exceptions import GPUMemoryError, GPUMonitorError
from . import devices
from .devices import (
    GB,
    POLL_SECONDS,
    GPUMonitor,
    GPUProcess,
    GPUSource,
    gpu_memory_reading,
    poll_until,
    read_host_memory,
)

__all__ = ["preflight"]

logger = logging.getLogger(__name__)

WEIGHTS_HEADROOM_GB = 1.0  # CPU backend: room for the model weights on top of the KV cache
MEMORY_HINT = (
    "free GPU memory, lower gpu_memory_utilization, wait with --wait-for-gpu SECONDS, or skip with --skip-gpu-check"
)
HOST_MEMORY_HINT = (
    "free host memory, set a smaller kv_cache_memory_bytes, "
    "wait with --wait-for-gpu SECONDS, or skip with --skip-gpu-check"
)


@dataclass(frozen=True, slots=True)
class _Probe:
    reading: MemoryReading
    free_gb: float
    processes: tuple[GPUProcess, ...] = ()


def _fits(probe: _Probe, required_gb: float, threshold: float) -> bool:
    return probe.free_gb >= required_gb and probe.reading.fraction <= threshold


def _refusal(probe: _Probe, required_gb: float, need: str, threshold: float, waited: float | None) -> str:
    r = probe.reading
    what = r.device if r.device != "host" else "host memory"
    message = (
        f"{what} is {r.fraction * 100:.1f}% used ({r.used_gb:.1f} GB of {r.total_gb:.1f} GB, "
        f"{probe.free_gb:.1f} GB free); vLLM needs {required_gb:.1f} GB free ({need})"
    )
    if r.fraction > threshold:
        message += f" and usage under gpu_memory_threshold {threshold:.2f}"
    if probe.processes:
        held = ", ".join(
            f"{p.pid} {p.name}" + (f" ({p.used_gb:.1f} GB)" if p.used_gb is not None else "") for p in probe.processes
        )
        message += f"; other processes hold memory on {r.device}: {held}"
        message += "; vLLM refuses to start while other processes hold the memory it needs"
    if waited:
        message += f"; still short after waiting {waited:g} s"
    return message


def _check_device(
    probe_once: Callable[[], _Probe],
    need: Callable[[float], tuple[float, str]],
    threshold: float,
    wait_seconds: float | None,
    hint: str,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> MemoryReading:
    probe = probe_once()
    required_gb, explain = need(probe.reading.total_gb)
    if not _fits(probe, required_gb, threshold) and wait_seconds:
        logger.info("%s short of memory; waiting up to %g s", probe.reading.device, wait_seconds)
        state = {"probe": probe}

        def ready() -> bool:
            state["probe"] = probe_once()
            return _fits(state["probe"], required_gb, threshold)

        poll_until(ready, wait_seconds, POLL_SECONDS, sleep, clock)
        probe = state["probe"]
    if not _fits(probe, required_gb, threshold):
        raise GPUMemoryError(
            _refusal(probe, required_gb, explain, threshold, wait_seconds),
            utilization_percent=probe.reading.fraction * 100,
            required_gb=required_gb,
            free_gb=probe.free_gb,
            hint=hint,
        )
    return probe.reading


def preflight(
    config: VLLMConfig,
    *,
    cpu: bool,
    wait_seconds: float | None = None,
    source: GPUSource | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[MemoryReading]:
    """Check vLLM can start: raise GPUMemoryError (after waiting up to ``wait_seconds``) when not.

    GPU: every GPU the engines will use, gpu_id .. gpu_id + tensor_parallel_size × data_parallel_size
    - 1, needs gpu_memory_utilization × total free (vLLM's own start condition) and usage under
    gpu_memory_threshold; the error names the GPU that fails (and, with several, the range). A GPU
    that does not exist raises GPUMonitorError. CPU: host memory needs the engine's KV cache
    (kv_cache_memory_bytes, else the CPU default of 2 GiB the engine then uses) plus 1 GB for
    weights free, per replica.
    """
    threshold = config.gpu_memory_threshold
    if cpu:

        def host_probe() -> _Probe:
            r = read_host_memory()
            return _Probe(r, r.total_gb - r.used_gb)

        def host_need(total_gb: float) -> tuple[float, str]:
            if config.kv_cache_memory_bytes:
                kv, name = config.kv_cache_memory_bytes / GB, "kv_cache_memory_bytes"
            else:
                kv, name = CPU_DEFAULT_KV_CACHE_BYTES / GB, "the CPU default KV cache"
            replicas = config.data_parallel_size
            need = f"{name} {kv:.1f} GB + 1 GB for weights"
            if replicas > 1:
                return replicas * (kv + WEIGHTS_HEADROOM_GB), f"{replicas} replicas × ({need})"
            return kv + WEIGHTS_HEADROOM_GB, need

        return [_check_device(host_probe, host_need, threshold, wait_seconds, HOST_MEMORY_HINT, sleep, clock)]

    def gpu_need(total_gb: float) -> tuple[float, str]:
        util = config.gpu_memory_utilization
        return util * total_gb, f"gpu_memory_utilization {util:.2f} × {total_gb:.1f} GB"

    src = source if source is not None else devices.open_gpu_source()
    deadline = clock() + wait_seconds if wait_seconds else None
    readings: list[MemoryReading] = []
    tp, dp = config.tensor_parallel_size, config.data_parallel_size
    gpu_ids = range(config.gpu_id, config.gpu_id + tp * dp)
    for gpu_id in gpu_ids:
        monitor = GPUMonitor(gpu_id, threshold, source=src, sleep=sleep, clock=clock)

        def gpu_probe(monitor: GPUMonitor = monitor) -> _Probe:
            s = monitor.get_stats()
            return _Probe(gpu_memory_reading(s), s.memory_free_gb, tuple(s.processes))

        remaining = max(deadline - clock(), 0.0) if deadline is not None else None
        try:
            readings.append(_check_device(gpu_probe, gpu_need, threshold, remaining, MEMORY_HINT, sleep, clock))
        except GPUMonitorError as exc:
            if len(gpu_ids) > 1:
                exc.message += (
                    f"; GPU {gpu_id} is one of the {len(gpu_ids)} GPUs this run uses "
                    f"({gpu_ids[0]}-{gpu_ids[-1]}: tensor_parallel_size {tp} × data_parallel_size {dp})"
                )
            raise
    return readings
