"""GPU and host memory: reading devices, pre-flight checks before vLLM starts, and a background sampler.

devices    ``GPUMonitor``, ``GPUStats``, ``NVMLSource``, host memory; what ``gpu-status`` shows; the
           ``GPUSource`` seam (``devices.open_gpu_source``: patch it there, not here)
preflight  ``preflight``: refuse to start vLLM when it would not fit
sampler    ``MemorySampler``, ``memory_reader``: ``MemorySample`` events while a run goes on

Nothing here prints or renders: ``cli.display`` does that.
"""

from .devices import (
    GPUMonitor,
    GPUProcess,
    GPUSource,
    GPUStats,
    NVMLSource,
    gpu_memory_reading,
    read_host_memory,
)
from .preflight import preflight
from .sampler import MemorySampler, memory_reader

__all__ = [
    "GPUMonitor",
    "GPUProcess",
    "GPUSource",
    "GPUStats",
    "MemorySampler",
    "NVMLSource",
    "gpu_memory_reading",
    "memory_reader",
    "preflight",
    "read_host_memory",
]
