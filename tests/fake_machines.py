"""Machine facts for CPUs that are not this one (the seam issue 19 allows: CPU flags and torch's
capability cannot be changed on a real machine). Shared by tests/test_hardware.py and
tests/test_plan.py."""

from __future__ import annotations

from vllm_extract.engine.machine_facts import MachineFacts

BASE = frozenset({"fpu", "sse", "sse2", "ssse3", "sse4_1", "sse4_2", "avx", "f16c"})
AVX2 = BASE | {"avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni"}
AVX512_BF16 = AVX512 | {"avx512_bf16"}
AMX = AVX512_BF16 | {"amx_bf16", "amx_tile", "amx_int8", "avx512_fp16"}


def cpu(flags: frozenset[str] | None, capability: str | None = "AVX512", **changes: object) -> MachineFacts:
    """A 2-core machine (vLLM computing on 1) with these CPU flags and torch capability; other
    ``MachineFacts`` fields as ``changes``."""
    values: dict[str, object] = {
        "device": "cpu",
        "cpu_flags": flags,
        "torch_capability": capability,
        "usable_cpus": 2,
        "compute_cores": 1,
    }
    values.update(changes)
    return MachineFacts(**values)  # type: ignore[arg-type]
