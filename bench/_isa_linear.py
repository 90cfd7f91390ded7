"""Does limiting torch and oneDNN to AVX2 make bf16 slow on a CPU that has native bf16? (issue 19)

Times one linear layer the size of the tiny model's MLP (576 -> 1536, batch 512) in float32 and bfloat16,
interleaved in one process so both see the same machine load, under four environments: none,
``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``, both. Two implementations:

- ``torch``: ``torch.nn.functional.linear`` (torch's own oneDNN for bf16, MKL for fp32);
- ``vllm``: vLLM's ``onednn_mm`` from its kernel library (``vllm/_C.abi3.so``, which links its own oneDNN),
  loaded with ``torch.ops.load_library``: no vLLM import, no engine. When the oneDNN matmul cannot be
  created (bf16 under ``ONEDNN_MAX_CPU_ISA=AVX2``), vLLM's ``dispatch_cpu_unquantized_gemm`` falls back to
  ``torch.nn.functional.linear``, and so does this script (column ``fallback``).

Each cell is a fresh subprocess (the variables are read once per process)::

    .venv/bin/python bench/_isa_linear.py [--seconds 5] [--library _C]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

M, K, N = 512, 576, 1536
ENVIRONMENTS: tuple[dict[str, str], ...] = (
    {},
    {"ATEN_CPU_CAPABILITY": "avx2"},
    {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
)


def _vllm_library(name: str) -> Path:
    spec = importlib.util.find_spec("vllm")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("vllm is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / f"{name}.abi3.so"


def measure(implementation: str, library: str, seconds: float) -> dict[str, Any]:
    """One process: fp32 and bf16 timings of the linear layer, interleaved, as a JSON-ready dict."""
    import torch
    import torch.nn.functional as F

    if implementation == "vllm":
        torch.ops.load_library(str(_vllm_library(library)))
    torch.manual_seed(0)
    functions: dict[str, Any] = {}
    fallback: list[str] = []
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        x = torch.randn(M, K).to(dtype)
        w = (torch.randn(N, K) / 24).to(dtype)
        functions[name] = lambda x=x, w=w: F.linear(x, w)
        if implementation == "vllm":
            try:
                handler = torch.tensor(torch.ops._C.create_onednn_mm_handler(w.t(), 32), dtype=torch.int64)
            except RuntimeError:
                fallback.append(name)
            else:

                def onednn(x: Any = x, handler: Any = handler, dtype: Any = dtype) -> Any:
                    out = torch.empty(M, N, dtype=dtype)
                    torch.ops._C.onednn_mm(out, x, None, handler)
                    return out

                functions[name] = onednn
        functions[name]()
    wall: dict[str, list[float]] = {name: [] for name in functions}
    cpu: dict[str, list[float]] = {name: [] for name in functions}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for name, function in functions.items():
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            for _ in range(3):
                function()
            wall[name].append((time.perf_counter() - wall_start) / 3)
            cpu[name].append((time.process_time() - cpu_start) / 3)
    flop = 2 * M * K * N
    result: dict[str, Any] = {"torch_capability": torch.backends.cpu.get_cpu_capability(), "fallback": fallback}
    for name in functions:
        median_wall = sorted(wall[name])[len(wall[name]) // 2]
        median_cpu = sorted(cpu[name])[len(cpu[name]) // 2]
        result[name] = {
            "ms": round(median_wall * 1e3, 2),
            "gflops": round(flop / median_wall / 1e9, 1),
            "gflops_per_cpu_s": round(flop / median_cpu / 1e9, 1),
        }
    result["bf16_over_fp32"] = round(result["bfloat16"]["ms"] / result["float32"]["ms"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timing seconds per cell")
    parser.add_argument("--library", default="_C", help="vLLM kernel library: _C, _C_AVX512 or _C_AVX2")
    parser.add_argument("--child", choices=("torch", "vllm"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.library, args.seconds)))
        return
    print("| implementation | environment | capability | fp32 ms | bf16 ms | bf16/fp32 | fallback |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for implementation in ("torch", "vllm"):
        for changes in ENVIRONMENTS:
            env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
            env.update(changes)
            command = [sys.executable, __file__, "--child", implementation, "--library", args.library]
            command += ["--seconds", str(args.seconds)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            label = " ".join(f"{k}={v}" for k, v in changes.items()) or "(none)"
            if done.returncode != 0:
                print(f"| {implementation} | {label} | failed: {done.stderr.strip().splitlines()[-1:]} |")
                continue
            cell = json.loads(done.stdout)
            print(
                f"| {implementation} | {label} | {cell['torch_capability']} | {cell['float32']['ms']} "
                f"| {cell['bfloat16']['ms']} | {cell['bf16_over_fp32']} | {', '.join(cell['fallback']) or '-'} |"
            )


if __name__ == "__main__":
    main()
