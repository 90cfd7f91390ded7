"""Paths a command writes are checked before anything is read or loaded (``run.paths``), and
through the CLI: an input is never the output, a missing folder is exit 2 before the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vllm_extract.cli import app
from vllm_extract.exceptions import OutputError
from vllm_extract.readers.documents import DEFAULT_GLOBS
from vllm_extract.run.paths import check_written_paths

runner = CliRunner()
LINES = b'{"id": "a", "text": "Ada Lovelace met Charles Babbage."}\n{"id": "b", "text": "In London."}\n'


def test_an_output_that_is_an_input_file_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(LINES)
    with pytest.raises(OutputError, match=r"--out .*in\.jsonl is an input file"):
        check_written_paths({"--out": source}, inputs=[str(source)])
    # the same file by another name: relative, through a symlink, or a hard link
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    hard = tmp_path / "hard.jsonl"
    os.link(source, hard)
    for other in (link, hard, Path(os.path.relpath(source))):
        with pytest.raises(OutputError, match="is an input file"):
            check_written_paths({"--report": other}, inputs=[str(source)])
    with pytest.raises(OutputError, match="is an input file"):
        check_written_paths({"--out": tmp_path / "o.jsonl", "--errors": source}, inputs=[str(source)])
    check_written_paths({"--out": tmp_path / "o.jsonl"}, inputs=[str(source), "-"])  # another file: fine


def test_an_output_the_folder_input_would_read_is_refused(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    with pytest.raises(OutputError, match="would read its own output"):
        check_written_paths({"--out": docs / "sub" / "out.txt"}, inputs=[str(docs)], globs=DEFAULT_GLOBS)
    # .jsonl is not among the default globs: an output there is not read back
    check_written_paths({"--out": docs / "out.jsonl"}, inputs=[str(docs) + "/"], globs=DEFAULT_GLOBS)
    # ... unless the globs take it; the files beside --out are checked like --out
    with pytest.raises(OutputError, match=r"the settings beside --out .* would be read"):
        check_written_paths(
            {"the settings beside --out": docs / "o.data.run.json"}, inputs=[str(docs)], globs=["*.json"]
        )


def test_symlinks_the_reader_follows_count_as_read(tmp_path: Path) -> None:
    docs, outside = tmp_path / "docs", tmp_path / "outside"
    docs.mkdir()
    outside.mkdir()
    (docs / "linked").symlink_to(outside)  # the reader walks into it: docs/linked/*.md is read
    with pytest.raises(OutputError, match="would be read by the input folder"):
        check_written_paths({"--out": outside / "report.md"}, inputs=[str(docs)], globs=DEFAULT_GLOBS)
    (outside / "o.txt").write_text("x")
    (docs / "o.txt").symlink_to(outside / "o.txt")  # read as docs/o.txt: writing its target rewrites an input
    with pytest.raises(OutputError, match="would be read by the input folder"):
        check_written_paths({"--out": outside / "o.txt"}, inputs=[str(docs)], globs=DEFAULT_GLOBS)
    (docs / "loop").symlink_to(docs)  # a loop ends the walk, as in the reader
    check_written_paths({"--out": tmp_path / "o.txt"}, inputs=[str(docs)], globs=DEFAULT_GLOBS)


def test_the_texts_folder(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    with pytest.raises(OutputError, match="would read the stored texts"):
        check_written_paths({}, inputs=[str(docs)], globs=DEFAULT_GLOBS, texts_dir=docs / "texts")
    check_written_paths({}, inputs=[str(docs)], globs=("*.md",), texts_dir=docs / "texts")
    check_written_paths({}, inputs=[str(docs)], globs=DEFAULT_GLOBS, texts_dir=tmp_path / "new" / "texts")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="is not a folder"):
        check_written_paths({}, texts_dir=tmp_path / "afile")


def test_a_file_another_option_reads_is_named_by_that_option(tmp_path: Path) -> None:
    earlier = tmp_path / "o.jsonl"
    earlier.write_text("")
    with pytest.raises(OutputError, match=r"--out .*o\.jsonl is also --reuse"):
        check_written_paths({"--out": Path(os.path.relpath(earlier))}, read={f"--reuse {earlier}": earlier})


def test_missing_folders_and_two_options_on_one_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"--report .*r\.json: the folder .*missing does not exist"):
        check_written_paths({"--out": tmp_path / "o.jsonl", "--report": tmp_path / "missing" / "r.json"})
    with pytest.raises(OutputError, match="--errors and --out name the same file"):
        check_written_paths({"--out": tmp_path / "o.jsonl", "--errors": tmp_path / "o.jsonl"})
    check_written_paths({"--out": tmp_path / "o.jsonl", "--report": None})


def test_run_never_writes_over_its_input_and_checks_paths_before_loading(tmp_path: Path) -> None:
    source = tmp_path / "same.jsonl"
    source.write_bytes(LINES)
    result = runner.invoke(app, ["run", str(source), "--out", str(source), "--overwrite", "--model", "tiny"])
    assert result.exit_code == 2 and "is an input file" in result.output, result.output
    assert source.read_bytes() == LINES and not (tmp_path / "same.jsonl.lock").exists()
    missing = tmp_path / "nope" / "o.jsonl"
    result = runner.invoke(app, ["run", str(source), "--out", str(missing), "--model", "tiny"])
    assert result.exit_code == 2 and "does not exist" in result.output and "Traceback" not in result.output
    # An unwritable --report used to surface as a traceback after the whole run: now exit 2 up front.
    report = tmp_path / "nope" / "r.json"
    result = runner.invoke(app, ["run", str(source), "--out", str(tmp_path / "o.jsonl"), "--report", str(report)])
    assert result.exit_code == 2 and "--report" in result.output
    assert not (tmp_path / "o.jsonl").exists()
    result = runner.invoke(app, ["gold", "from-conll", str(source), "--out", str(source), "--overwrite"])
    assert result.exit_code == 2 and "is also FILE" in result.output and source.read_bytes() == LINES


def test_an_output_that_is_an_existing_folder_is_refused_before_the_run(tmp_path: Path, dead_server_url: str) -> None:
    """``--report DIR`` crashed after the whole run (exit 70), ``--out DIR --overwrite`` too: now
    exit 2 up front, naming the option, before any engine or server is tried (the dead server
    would be exit 3)."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(LINES)
    folder = tmp_path / "reports"
    folder.mkdir()
    with pytest.raises(OutputError, match=r"--metrics-file .*reports is a folder"):
        check_written_paths({"--out": tmp_path / "o.jsonl", "--metrics-file": folder})
    http = ["--backend", "http", "--server", dead_server_url, "--model", "tiny"]
    out = tmp_path / "o.jsonl"
    result = runner.invoke(app, ["run", str(source), "--out", str(out), "--report", str(folder), *http])
    assert result.exit_code == 2 and "--report" in result.output and "is a folder" in result.output, result.output
    assert not out.exists() and list(folder.iterdir()) == []
    for extra in (["--overwrite"], [], ["--resume"]):
        result = runner.invoke(app, ["run", str(source), "--out", str(folder), *extra, *http])
        assert result.exit_code == 2 and "--out" in result.output and "is a folder" in result.output, result.output
    assert folder.is_dir() and list(folder.iterdir()) == []


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a subprocess: its file descriptors are real, so the engine log is too."""
    return subprocess.run(
        [sys.executable, "-m", "vllm_extract.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_the_engine_log_is_opened_after_the_checks_and_named_only_when_written(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(LINES)
    refused = cli("run", str(source), "--out", str(source), "--overwrite", "--model", "tiny")
    assert refused.returncode == 2 and "is an input file" in refused.stderr
    assert not (tmp_path / "in.jsonl.engine.log").exists()  # nothing beside the input either
    # A configuration error once the log is open: the log holds only its header, so it is not
    # named (it used to be, pointing at a file with nothing from any engine).
    out = tmp_path / "o.jsonl"
    failed = cli("run", str(source), "--out", str(out), "--model", "tiny", "--backend", "grpc")
    assert failed.returncode == 2 and "unknown backend" in failed.stderr, failed.stderr
    log = tmp_path / "o.jsonl.engine.log"
    assert log.read_text().startswith("== vllm-extract run started") and len(log.read_text().splitlines()) == 1
    assert "engine's own output" not in failed.stderr
