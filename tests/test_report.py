"""Run reports: Prometheus text exposition and atomic JSON/metrics files."""

from __future__ import annotations

import calendar
import json
import os
import re
import stat
import time
from pathlib import Path

import pytest

from vllm_extract.output.report import prometheus_text, write_metrics, write_report

# One line of the text exposition format: a comment (HELP/TYPE) or a sample.
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
_LABELS = rf"\{{(?:[a-zA-Z_][a-zA-Z0-9_]*={_LABEL_VALUE})(?:,[a-zA-Z_][a-zA-Z0-9_]*={_LABEL_VALUE})*\}}"
_VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)"
HELP = re.compile(rf"^# HELP ({_NAME}) (.*)$")
TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")
SAMPLE = re.compile(rf"^({_NAME})({_LABELS})? ({_VALUE})$")
LABEL = re.compile(rf"([a-zA-Z_][a-zA-Z0-9_]*)=({_LABEL_VALUE})")


def _report(**summary_changes: object) -> dict:
    summary = {
        "documents": 12,
        "ok": 9,
        "errors": 2,
        "skipped_done": 1,
        "entities": 345,
        "chunks": 20,
        "requests": 22,
        "prompt_tokens": 12_345_678,
        "completion_tokens": 98_765,
        "truncated_chunks": 1,
        "ungrounded_dropped": 4,
        "elapsed_seconds": 61.5,
        "interrupted": False,
        "errors_by_kind": {"binary": 1, "not_utf8": 1},
        "documents_per_second": 0.1951,
        "generated_tokens_per_second": 1605.93,
    }
    summary.update(summary_changes)
    return {
        "model": "m",
        "summary": summary,
        "gpu_memory_alerts": 3,
        "finished_at": "2024-11-28T18:30:00Z",
    }


def _parse(text: str) -> dict[str, dict]:
    """Families by name: help, type, and samples as {(label items...): value}."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    families: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        if m := HELP.match(line):
            assert m.group(1) not in families, f"family {m.group(1)} repeated"
            current = families.setdefault(m.group(1), {"help": m.group(2), "type": None, "samples": {}})
        elif m := TYPE.match(line):
            assert current is not None and m.group(1) in families
            assert families[m.group(1)]["type"] is None
            families[m.group(1)]["type"] = m.group(2)
        elif m := SAMPLE.match(line):
            name, labels, value = m.groups()
            assert name in families and families[name]["type"] == "gauge", line
            key = tuple(LABEL.findall(labels or ""))
            assert key not in families[name]["samples"], f"duplicate sample {line}"
            families[name]["samples"][key] = float(value)
        else:
            pytest.fail(f"not exposition format: {line!r}")
    return families


def test_prometheus_text_format_and_values() -> None:
    text = prometheus_text(_report())
    assert "# HELP vllm_extract_documents Documents written in this run, by status" in text
    assert "# TYPE vllm_extract_documents gauge" in text
    lines = text.splitlines()
    assert 'vllm_extract_documents{model="m",status="ok"} 9' in lines
    assert 'vllm_extract_documents{model="m",status="error"} 2' in lines
    assert 'vllm_extract_documents{model="m",status="skipped"} 1' in lines
    families = _parse(text)
    assert all(name.startswith("vllm_extract_") for name in families)
    assert all(f["help"] and f["type"] == "gauge" and f["samples"] for f in families.values())
    m = (("model", '"m"'),)
    assert families["vllm_extract_chunks"]["samples"] == {m: 20}
    assert families["vllm_extract_entities"]["samples"] == {m: 345}
    assert families["vllm_extract_generated_tokens"]["samples"] == {m: 98_765}
    assert families["vllm_extract_duration_seconds"]["samples"] == {m: 61.5}
    assert families["vllm_extract_generated_tokens_per_second"]["samples"] == {m: 1605.93}
    assert families["vllm_extract_gpu_memory_alerts"]["samples"] == {m: 3}
    assert families["vllm_extract_interrupted"]["samples"] == {m: 0}
    assert families["vllm_extract_errors"]["samples"] == {
        (("model", '"m"'), ("kind", '"binary"')): 1,
        (("model", '"m"'), ("kind", '"not_utf8"')): 1,
    }


def test_large_counts_are_exact() -> None:
    text = prometheus_text(_report())
    assert 'vllm_extract_prompt_tokens{model="m"} 12345678' in text.splitlines()
    assert "e+" not in text
    assert _parse(text)["vllm_extract_prompt_tokens"]["samples"][(("model", '"m"'),)] == 12_345_678


def test_last_run_timestamp() -> None:
    families = _parse(prometheus_text(_report()))
    expected = calendar.timegm(time.strptime("2024-11-28T18:30:00Z", "%Y-%m-%dT%H:%M:%SZ"))
    assert families["vllm_extract_last_run_timestamp_seconds"]["samples"][(("model", '"m"'),)] == expected
    report = _report()
    report["finished_unix"] = 1_732_818_600.25
    lines = prometheus_text(report).splitlines()
    assert 'vllm_extract_last_run_timestamp_seconds{model="m"} 1732818600.25' in lines


def test_no_errors_and_interrupted() -> None:
    families = _parse(prometheus_text(_report(errors_by_kind={}, interrupted=True)))
    assert families["vllm_extract_errors"]["samples"] == {(("model", '"m"'), ("kind", '"none"')): 0}
    assert families["vllm_extract_interrupted"]["samples"] == {(("model", '"m"'),): 1}


def test_model_label_is_escaped() -> None:
    report = _report()
    report["model"] = 'weird\\name "quoted"\nline'
    text = prometheus_text(report)
    families = _parse(text)
    (key,) = families["vllm_extract_chunks"]["samples"]
    assert key == (("model", '"weird\\\\name \\"quoted\\"\\nline"'),)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_report_atomic(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old", encoding="utf-8")
    report = _report()
    write_report(path, report)
    assert json.loads(path.read_text(encoding="utf-8")) == report
    assert path.read_text(encoding="utf-8").endswith("}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    write_report(path, {"summary": {}})
    assert json.loads(path.read_text(encoding="utf-8")) == {"summary": {}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_write_metrics_atomic_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "vllm_extract.prom"
    write_metrics(path, _report())
    assert path.read_text(encoding="utf-8") == prometheus_text(_report())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vllm_extract.prom"]
    # node_exporter's textfile collector runs as another user: the file must be readable by others.
    assert _mode(path) & 0o044 == 0o044
    # Rewriting keeps a mode someone chose for the file.
    os.chmod(path, 0o640)
    write_metrics(path, _report(ok=10))
    assert _mode(path) == 0o640
    assert 'vllm_extract_documents{model="m",status="ok"} 10' in path.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vllm_extract.prom"]


def test_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.prom"
    with pytest.raises(KeyError):
        write_metrics(path, {"model": "m"})  # no summary
    with pytest.raises(TypeError):
        write_report(path, {"summary": object()})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError):
        write_report(tmp_path / "missing" / "r.json", _report())
    assert list(tmp_path.iterdir()) == []


def test_engine_occupancy_and_restarts_are_metrics_when_the_engine_measured_them() -> None:
    engine = {"occupancy": 0.97, "idle_share": 0.012, "limited_steps": 3, "steps": 400}
    families = _parse(prometheus_text(_report(engine=engine, engine_restarts=1, preparation_seconds=2.5)))
    m = (("model", '"m"'),)
    assert families["vllm_extract_engine_occupancy"]["samples"] == {m: 0.97}
    assert families["vllm_extract_engine_idle_share"]["samples"] == {m: 0.012}
    assert families["vllm_extract_engine_restarts"]["samples"] == {m: 1}
    assert families["vllm_extract_preparation_seconds"]["samples"] == {m: 2.5}
    over_http = _parse(prometheus_text(_report(engine={})))  # a server's engine: not measured here
    assert "vllm_extract_engine_occupancy" not in over_http
