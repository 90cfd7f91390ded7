"""Tests for vllm_extract.engine.hardware, machine_facts and model_size: the dtype choice, the step budget
and timeout, the fact readers and the model-size readers, all over fake facts and files (no torch, no
engine)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from fake_machines import AMX, AVX2, AVX512, AVX512_BF16, cpu

from vllm_extract.engine import machine_facts
from vllm_extract.engine.hardware import (
    BUSY_FACTOR,
    MIN_STEP_TOKENS,
    STEP_SHARE_OF_TIMEOUT,
    choose_dtype,
    choose_step_budget,
    compute_floor,
    estimate_step_seconds,
)
from vllm_extract.engine.machine_facts import (
    DEFAULT_EXECUTE_MODEL_TIMEOUT_S,
    TIMEOUT_ENV,
    MachineFacts,
    read_compute_cores,
    read_cpu_flags,
    read_cpu_quota,
    read_machine_facts,
)
from vllm_extract.engine.model_size import model_attention_width, model_parameters
from vllm_extract.exceptions import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent

# issue 19's measured case: the 135M tiny model, a 5,502-token prefill in bf16 on a 2-core AVX2-only EPYC
# (vLLM computes on 1 of the 2 cores), busy with other work: the step ran past vLLM's 300 s timeout.
ANCHOR_PARAMETERS = 135_000_000
ANCHOR_TOKENS = 5502
SMOLLM2_ATTENTION_WIDTH = 30 * 9 * 64


EPYC_AVX2 = cpu(AVX2, "AVX2")
GPU = MachineFacts(device="gpu", cpu_flags=AVX512, torch_capability=None, usable_cpus=32, compute_cores=31)


# --- dtype ---------------------------------------------------------------------------------------------


def test_avx2_only_cpu_gets_float32() -> None:
    choice = choose_dtype(None, EPYC_AVX2)
    assert (choice.dtype, choice.override) == ("float32", False)
    assert "no avx512_bf16/amx_bf16" in choice.reason
    assert "3.6x" in choice.reason


def test_avx512_bf16_cpu_gets_bfloat16() -> None:
    choice = choose_dtype("auto", cpu(AVX512_BF16))
    assert (choice.dtype, choice.override) == ("bfloat16", False)
    assert "avx512_bf16" in choice.reason


def test_amx_cpu_gets_bfloat16() -> None:
    choice = choose_dtype(None, cpu(AMX))
    assert choice.dtype == "bfloat16"
    assert "amx_bf16" in choice.reason


def test_onednn_limited_to_avx2_gets_float32() -> None:
    choice = choose_dtype(None, cpu(AVX512_BF16, onednn_max_cpu_isa="AVX2"))
    assert choice.dtype == "float32"
    assert choice.reason == "float32: ONEDNN_MAX_CPU_ISA=AVX2 limits oneDNN below bf16"


def test_torch_capability_avx2_on_a_bf16_cpu_gets_float32() -> None:
    choice = choose_dtype(None, cpu(AVX512_BF16, "AVX2"))
    assert choice.dtype == "float32"
    assert "AVX2" in choice.reason and "avx512_bf16" in choice.reason


def test_gpu_gets_auto() -> None:
    choice = choose_dtype(None, GPU)
    assert (choice.dtype, choice.override) == ("auto", False)


@pytest.mark.parametrize(
    ("requested", "facts", "dtype"),
    [
        ("bfloat16", EPYC_AVX2, "bfloat16"),
        ("float32", cpu(AMX), "float32"),
        ("float32", GPU, "float32"),
        ("half", cpu(AMX), "float16"),
        ("Float", GPU, "float32"),
    ],
)
def test_explicit_dtype_is_kept_as_an_override(requested: str, facts: MachineFacts, dtype: str) -> None:
    choice = choose_dtype(requested, facts)
    assert (choice.dtype, choice.override) == (dtype, True)
    assert choice.reason == f"--dtype {requested} (override)"


@pytest.mark.parametrize(
    ("limit", "dtype"),
    [
        ("AVX2_VNNI_2", "float32"),
        ("AVX512_CORE", "float32"),
        ("AVX512_CORE_VNNI", "float32"),
        ("AVX512_CORE_BF16", "bfloat16"),
        ("avx512_core_bf16", "bfloat16"),
        ("AVX512_CORE_AMX", "bfloat16"),
        ("AVX10_1_512", "bfloat16"),
        ("ALL", "bfloat16"),
        ("DEFAULT", "bfloat16"),
    ],
)
def test_onednn_values(limit: str, dtype: str) -> None:
    assert choose_dtype(None, cpu(AMX, onednn_max_cpu_isa=limit)).dtype == dtype


def test_unknown_onednn_value_and_older_variable_name_are_named() -> None:
    choice = choose_dtype(None, cpu(AVX512_BF16, onednn_max_cpu_isa="AVX9000", onednn_variable="DNNL_MAX_CPU_ISA"))
    assert choice.dtype == "float32"
    assert "DNNL_MAX_CPU_ISA=AVX9000" in choice.reason


def test_unreadable_flags_or_unknown_capability_give_float32() -> None:
    assert choose_dtype(None, cpu(None, machine="aarch64")).dtype == "float32"
    assert "aarch64" in choose_dtype(None, cpu(None, machine="aarch64")).reason
    unknown = choose_dtype(None, cpu(AVX512_BF16, None))
    assert unknown.dtype == "float32" and "unknown" in unknown.reason


def test_invalid_dtype_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="bf16"):
        choose_dtype("bf16", GPU)


# --- step budget ---------------------------------------------------------------------------------------


def test_slow_avx2_fp32_two_core_machine_gets_a_smaller_budget_inside_the_timeout() -> None:
    budget = choose_step_budget(EPYC_AVX2, "float32", ANCHOR_PARAMETERS, 16384, 8192)
    assert MIN_STEP_TOKENS <= budget.max_num_batched_tokens < 16384
    assert budget.execute_model_timeout_s == DEFAULT_EXECUTE_MODEL_TIMEOUT_S
    assert not budget.timeout_changed and budget.environment == {}
    assert budget.estimated_step_s is not None
    assert budget.estimated_step_s <= budget.execute_model_timeout_s / STEP_SHARE_OF_TIMEOUT
    assert f"{budget.max_num_batched_tokens} tokens per step" in budget.reason
    assert "avx2 fp32" in budget.reason


def test_gpu_keeps_vllm_defaults() -> None:
    budget = choose_step_budget(GPU, "auto", 8_000_000_000, 16384, 32768)
    assert (budget.max_num_batched_tokens, budget.execute_model_timeout_s) == (16384, 300)
    assert not budget.timeout_changed and budget.estimated_step_s is None
    assert budget.environment == {}
    assert "GPU" in budget.reason


@pytest.mark.parametrize("configured", [1, 256, 512, 4096, 16384])
@pytest.mark.parametrize(
    "facts", [EPYC_AVX2, cpu(AMX, compute_cores=64), cpu(AVX512_BF16, compute_cores=8), GPU], ids=repr
)
@pytest.mark.parametrize("parameters", [1_000_000, ANCHOR_PARAMETERS, 7_000_000_000, None])
def test_budget_never_above_configured(configured: int, facts: MachineFacts, parameters: int | None) -> None:
    budget = choose_step_budget(facts, "bfloat16", parameters, configured, 8192, max_num_seqs=1)
    assert 1 <= budget.max_num_batched_tokens <= configured


def test_anchor_is_predicted_over_300_s_and_its_chosen_budget_is_well_inside() -> None:
    """The floors agree with the measurement: the model's own formula (busy factor included) predicts the
    issue's 5,502-token bf16 step on the AVX2 EPYC over 300 s, both from parameters alone and with
    attention; the budget chosen for that machine and dtype keeps the step within a quarter of the
    timeout."""
    predicted = estimate_step_seconds(EPYC_AVX2, "bfloat16", ANCHOR_PARAMETERS, ANCHOR_TOKENS)
    assert predicted > 300
    floor, label = compute_floor(EPYC_AVX2, "bfloat16")
    assert label == "bf16 emulated on avx2"
    assert predicted == pytest.approx(ANCHOR_TOKENS * 2 * ANCHOR_PARAMETERS / (1 * floor / BUSY_FACTOR))
    with_attention = estimate_step_seconds(
        EPYC_AVX2,
        "bfloat16",
        ANCHOR_PARAMETERS,
        ANCHOR_TOKENS,
        attention_width=SMOLLM2_ATTENTION_WIDTH,
        context_tokens=ANCHOR_TOKENS // 2,
    )
    assert with_attention > predicted
    for width in (None, SMOLLM2_ATTENTION_WIDTH):
        budget = choose_step_budget(EPYC_AVX2, "bfloat16", ANCHOR_PARAMETERS, 16384, 8192, attention_width=width)
        assert budget.max_num_batched_tokens < ANCHOR_TOKENS
        assert budget.estimated_step_s is not None
        assert budget.estimated_step_s <= budget.execute_model_timeout_s / STEP_SHARE_OF_TIMEOUT
    # float32, which choose_dtype picks there, needs no timeout change for the parameters-only formula
    assert not choose_step_budget(EPYC_AVX2, "float32", ANCHOR_PARAMETERS, 16384, 8192).timeout_changed


def test_native_bf16_is_faster_than_emulated_and_fp32() -> None:
    assert compute_floor(cpu(AMX), "bfloat16")[0] > compute_floor(cpu(AVX512_BF16), "bfloat16")[0]
    assert compute_floor(cpu(AVX512_BF16), "bfloat16")[0] > compute_floor(cpu(AVX512_BF16), "float32")[0]
    assert compute_floor(EPYC_AVX2, "bfloat16")[0] < compute_floor(EPYC_AVX2, "float32")[0]
    # the limits slow the same CPU down: torch AVX2 or oneDNN AVX2 make bf16 emulated
    limited = cpu(AVX512_BF16, onednn_max_cpu_isa="AVX2")
    assert compute_floor(limited, "bfloat16")[1] == "bf16 emulated on avx2"
    assert compute_floor(cpu(AVX512_BF16, "AVX2"), "bfloat16")[1] == "bf16 emulated on avx2"
    assert compute_floor(cpu(AVX512_BF16), "auto") == compute_floor(cpu(AVX512_BF16), "bfloat16")
    assert compute_floor(cpu(AVX512_BF16), "float16")[1] == "fp16 emulated on avx512"
    assert compute_floor(cpu(AMX), "half")[1] == "avx512 fp16"


def test_more_cores_or_a_quota_change_the_budget() -> None:
    one = choose_step_budget(cpu(AVX512_BF16), "bfloat16", 1_000_000_000, 16384, 8192)
    many = choose_step_budget(cpu(AVX512_BF16, compute_cores=32), "bfloat16", 1_000_000_000, 16384, 8192)
    quota = choose_step_budget(
        cpu(AVX512_BF16, compute_cores=32, cpu_quota=1.0), "bfloat16", 1_000_000_000, 16384, 8192
    )
    assert many.max_num_batched_tokens > one.max_num_batched_tokens
    assert quota.max_num_batched_tokens == one.max_num_batched_tokens


def test_timeout_rises_when_even_the_smallest_step_is_slow() -> None:
    budget = choose_step_budget(EPYC_AVX2, "float32", 7_000_000_000, 16384, 8192)
    assert budget.max_num_batched_tokens == MIN_STEP_TOKENS
    assert budget.estimated_step_s is not None
    assert budget.timeout_changed
    assert budget.execute_model_timeout_s % 60 == 0
    assert budget.estimated_step_s <= budget.execute_model_timeout_s / STEP_SHARE_OF_TIMEOUT
    assert budget.environment == {TIMEOUT_ENV: str(budget.execute_model_timeout_s)}
    assert "timeout raised" in budget.reason


def test_a_timeout_the_user_set_is_kept() -> None:
    facts = cpu(AVX2, "AVX2", execute_model_timeout_s=120)
    small = choose_step_budget(facts, "float32", ANCHOR_PARAMETERS, 16384, 8192)
    assert small.execute_model_timeout_s == 120 and not small.timeout_changed
    assert small.estimated_step_s is not None and small.estimated_step_s <= 30
    big = choose_step_budget(facts, "float32", 7_000_000_000, 16384, 8192)
    assert big.execute_model_timeout_s == 120 and not big.timeout_changed
    assert f"{TIMEOUT_ENV}=120 you set" in big.reason


def test_vllm_minimums_hold() -> None:
    """vLLM 0.32 refuses a budget below max_num_seqs, and below max_model_len without chunked prefill."""
    seqs = choose_step_budget(EPYC_AVX2, "bfloat16", 7_000_000_000, 16384, 8192, max_num_seqs=1024)
    assert seqs.max_num_batched_tokens == 1024
    whole = choose_step_budget(EPYC_AVX2, "float32", ANCHOR_PARAMETERS, 16384, 8192, enable_chunked_prefill=False)
    assert whole.max_num_batched_tokens == 8192
    assert whole.estimated_step_s is not None
    assert whole.estimated_step_s <= whole.execute_model_timeout_s / STEP_SHARE_OF_TIMEOUT


def test_unknown_model_size_keeps_the_configured_values() -> None:
    budget = choose_step_budget(EPYC_AVX2, "float32", None, 16384, 8192)
    assert (budget.max_num_batched_tokens, budget.execute_model_timeout_s) == (16384, 300)
    assert budget.estimated_step_s is None and "unknown" in budget.reason


def test_bad_budget_arguments_raise() -> None:
    with pytest.raises(ValueError, match="max_model_len"):
        choose_step_budget(EPYC_AVX2, "float32", 1, 16384, 0)
    with pytest.raises(ValueError, match="model_parameters"):
        choose_step_budget(EPYC_AVX2, "float32", 0, 16384, 8192)
    with pytest.raises(ConfigurationError):
        choose_step_budget(EPYC_AVX2, "int8", 1, 16384, 8192)


# --- reading the facts ----------------------------------------------------------------------------------


def test_read_cpu_flags(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu AVX2 fma avx512_bf16\n\nprocessor\t: 1\n")
    assert read_cpu_flags(info) == frozenset({"fpu", "avx2", "fma", "avx512_bf16"})
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 sve\n")
    assert read_cpu_flags(arm) is None
    assert read_cpu_flags(tmp_path / "missing") is None


def test_read_cpu_quota(tmp_path: Path) -> None:
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert read_cpu_quota(quota) == 1.5
    quota.write_text("max 100000\n")
    assert read_cpu_quota(quota) is None
    assert read_cpu_quota(tmp_path / "missing") is None


def _fake_sysfs(root: Path, topology: dict[int, tuple[int, int, int]]) -> Path:
    """cpuN -> (node, package, core) written as sysfs would."""
    for cpu_id, (node, package, core) in topology.items():
        base = root / f"cpu{cpu_id}"
        (base / "topology").mkdir(parents=True)
        (base / "topology" / "physical_package_id").write_text(f"{package}\n")
        (base / "topology" / "core_id").write_text(f"{core}\n")
        (base / f"node{node}").mkdir()
    return root


def test_read_compute_cores_follows_vllm_binding(tmp_path: Path) -> None:
    # two NUMA nodes, 4 physical cores each, two hyperthreads per core: 16 logical CPUs
    topology = {cpu_id: (cpu_id // 8, cpu_id // 8, cpu_id % 4) for cpu_id in range(16)}
    sysfs = _fake_sysfs(tmp_path / "cpu", topology)
    everything = range(16)
    # auto: the first node's 4 physical cores, one reserved for the scheduler
    assert read_compute_cores({}, allowed=everything, sysfs_cpu=sysfs) == 3
    assert read_compute_cores({"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}, allowed=everything, sysfs_cpu=sysfs) == 4
    assert read_compute_cores({"VLLM_CPU_OMP_THREADS_BIND": "nobind"}, allowed=everything, sysfs_cpu=sysfs) == 8
    assert read_compute_cores({"VLLM_CPU_OMP_THREADS_BIND": "0-5|8-13"}, allowed=everything, sysfs_cpu=sysfs) == 6
    # a 2-core machine: vLLM computes on 1 core; a 1-core machine on that core
    assert read_compute_cores({}, allowed=[0, 1], sysfs_cpu=tmp_path / "none") == 1
    assert read_compute_cores({}, allowed=[0], sysfs_cpu=tmp_path / "none") == 1
    with pytest.raises(ConfigurationError):
        read_compute_cores({"VLLM_CPU_OMP_THREADS_BIND": "zero-three"}, allowed=everything, sysfs_cpu=sysfs)


def test_read_machine_facts_from_fake_sources(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("flags\t: " + " ".join(sorted(AVX512_BF16)) + "\n")
    quota = tmp_path / "cpu.max"
    quota.write_text("200000 100000\n")
    environ = {"DNNL_MAX_CPU_ISA": "avx2", TIMEOUT_ENV: "600"}
    facts = read_machine_facts(
        environ=environ,
        cpuinfo=info,
        cpu_max=quota,
        sysfs_cpu=tmp_path / "none",
        device="cpu",
        torch_capability="AVX512",
    )
    assert facts.cpu_flags == AVX512_BF16
    assert (facts.onednn_variable, facts.onednn_max_cpu_isa) == ("DNNL_MAX_CPU_ISA", "avx2")
    assert (facts.cpu_quota, facts.execute_model_timeout_s) == (2.0, 600)
    assert choose_dtype(None, facts).reason == "float32: DNNL_MAX_CPU_ISA=avx2 limits oneDNN below bf16"
    with pytest.raises(ConfigurationError, match=TIMEOUT_ENV):
        read_machine_facts(environ={TIMEOUT_ENV: "5m"}, cpuinfo=info, device="gpu")


def test_detect_device_from_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    installed: dict[str, str] = {}

    def distribution(name: str) -> object:
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return object()

    def version(name: str) -> str:
        distribution(name)
        return installed[name]

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setattr(importlib.metadata, "version", version)
    assert machine_facts.detect_device() == "gpu"
    installed["vllm"] = "0.32.1"
    assert machine_facts.detect_device() == "gpu"
    installed["vllm"] = "0.32.0+cpu"
    assert machine_facts.detect_device() == "cpu"
    installed.clear()
    installed["vllm-cpu"] = "0.32.0"
    assert machine_facts.detect_device() == "cpu"


def test_facts_reject_impossible_values() -> None:
    with pytest.raises(ValueError):
        cpu(AVX2, compute_cores=0)
    with pytest.raises(ValueError):
        dataclasses.replace(EPYC_AVX2, execute_model_timeout_s=0)


def test_module_imports_neither_torch_nor_vllm() -> None:
    code = (
        "import sys, vllm_extract.engine.hardware, vllm_extract.engine.machine_facts, vllm_extract.engine.model_size; "
        "print(sorted({'torch', 'vllm'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- model size -----------------------------------------------------------------------------------------


def _write_safetensors(path: Path, shapes: dict[str, list[int]], dtype: str = "BF16") -> None:
    """A safetensors file written by hand: 8-byte little-endian header length, JSON header, zeroed data."""
    width = {"BF16": 2, "F32": 4, "I32": 4}[dtype]
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = width
        for n in shape:
            size *= n
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


def test_parameter_count_from_a_safetensors_file_written_by_the_library(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    st_numpy = pytest.importorskip("safetensors.numpy")
    st_numpy.save_file(
        {
            "embed.weight": numpy.zeros((100, 16), dtype=numpy.float32),
            "layer.weight": numpy.zeros((16, 48), dtype=numpy.float16),
            "norm.weight": numpy.zeros((16,), dtype=numpy.float32),
        },
        str(tmp_path / "model.safetensors"),
    )
    assert model_parameters(tmp_path) == 100 * 16 + 16 * 48 + 16


def test_parameter_count_from_sharded_files_written_by_hand(tmp_path: Path) -> None:
    _write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": [10, 20], "b": [5]})
    _write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"c": [3, 4, 5]}, dtype="F32")
    _write_safetensors(tmp_path / "consolidated.safetensors", {"a": [10, 20], "b": [5], "c": [3, 4, 5]})
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00001-of-00002.safetensors",
            "c": "model-00002-of-00002.safetensors",
        }
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert model_parameters(tmp_path) == 200 + 5 + 60  # the index's files only, not consolidated.safetensors


SMOLLM2_CONFIG = {
    "model_type": "llama",
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}
SMOLLM2_FROM_CONFIG = 49152 * 576 + 30 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536)


def test_parameter_count_from_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    assert model_parameters(tmp_path) == SMOLLM2_FROM_CONFIG  # no weights at all
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 8 + b"not a header")
    assert model_parameters(tmp_path) == SMOLLM2_FROM_CONFIG  # a damaged header falls back to config.json
    _write_safetensors(tmp_path / "model.safetensors", {"qweight": [576, 72]}, dtype="I32")
    quantized = dict(SMOLLM2_CONFIG, quantization_config={"bits": 4})
    (tmp_path / "config.json").write_text(json.dumps(quantized))
    assert model_parameters(tmp_path) == SMOLLM2_FROM_CONFIG  # packed int4 elements are not parameters
    multimodal = {"model_type": "llava", "text_config": SMOLLM2_CONFIG}
    (tmp_path / "config.json").write_text(json.dumps(multimodal))
    (tmp_path / "model.safetensors").unlink()
    assert model_parameters(tmp_path) == SMOLLM2_FROM_CONFIG


def test_attention_width_and_missing_models(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    assert model_attention_width(tmp_path) == SMOLLM2_ATTENTION_WIDTH
    assert model_parameters(tmp_path / "missing") is None
    assert model_attention_width(tmp_path / "missing") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert model_parameters(empty) is None
