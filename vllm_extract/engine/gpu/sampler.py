"""Memory while a run goes on: ``MemorySampler`` emits ``MemorySample`` events from its own thread.

``memory_reader`` gives the sampler a cheap function that reads the GPUs in use (or host RAM on
the CPU backend); the sampler counts threshold crossings (the report's ``gpu_memory_alerts``).
Nothing here prints or renders: ``cli.display`` does that.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ...events import MemoryReading, MemorySample
from . import devices
from .devices import GPUSource, gpu_memory_reading, read_host_memory

__all__ = ["MemorySampler", "memory_reader"]

logger = logging.getLogger(__name__)


def memory_reader(cpu: bool, gpu_ids: list[int], source: GPUSource | None = None) -> Callable[[], list[MemoryReading]]:
    """A cheap function returning the current readings (host, or the given GPUs) for MemorySampler."""
    if cpu:
        return lambda: [read_host_memory()]
    opened: list[GPUSource] = [source] if source is not None else []

    def read() -> list[MemoryReading]:
        if not opened:
            opened.append(devices.open_gpu_source())
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
