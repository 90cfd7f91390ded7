"""The files beside --out (one place names them) and the one atomic write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vllm_extract.output import files
from vllm_extract.output.files import (
    atomic_write,
    engine_log_path,
    lock_path,
    manifest_path,
    run_settings_path,
    same_file,
)


def test_the_files_beside_the_output() -> None:
    out = Path("/data/run/out.jsonl")
    assert lock_path(out) == Path("/data/run/out.jsonl.lock")
    assert run_settings_path(out) == Path("/data/run/out.jsonl.run.json")
    assert engine_log_path(out) == Path("/data/run/out.jsonl.engine.log")
    assert manifest_path("out-2.jsonl") == Path("out-2.jsonl.shard.json")


def test_the_files_beside_a_symlinked_output_sit_beside_the_real_file(tmp_path: Path) -> None:
    real = tmp_path / "runs" / "2024-01-02.jsonl"
    real.parent.mkdir()
    (tmp_path / "latest.jsonl").symlink_to(real)  # before the run: the target need not exist
    (tmp_path / "alias").symlink_to(real.parent, target_is_directory=True)
    for given in (tmp_path / "latest.jsonl", tmp_path / "alias" / real.name):
        for beside in (lock_path, run_settings_path, engine_log_path, manifest_path):
            assert beside(given) == beside(real) == real.with_name(real.name + beside(Path("x")).name[1:])


def test_atomic_write_replaces_keeps_the_mode_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    atomic_write(path, b"first")
    assert path.read_bytes() == b"first" and path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    atomic_write(path, b"second")
    assert path.read_bytes() == b"second" and path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.jsonl.run.json"
    path.write_bytes(b"old")

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_same_file(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    a.write_text("x")
    os.link(a, tmp_path / "hard.jsonl")
    (tmp_path / "soft.jsonl").symlink_to(a)
    assert same_file(a, tmp_path / "hard.jsonl") and same_file(a, tmp_path / "soft.jsonl")
    assert same_file(tmp_path / "new.jsonl", tmp_path / "sub" / ".." / "new.jsonl")  # not there yet
    assert not same_file(a, tmp_path / "new.jsonl")
