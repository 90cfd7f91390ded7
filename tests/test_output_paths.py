"""Paths a command writes are checked before anything is read or loaded (``output.paths``), and
through the CLI: an input is never the output, a missing folder is exit 2 before the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vllm_extract.cli import app
from vllm_extract.exceptions import OutputError
from vllm_extract.output.paths import check_written_paths
from vllm_extract.readers.documents import DEFAULT_GLOBS

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
        check_written_paths({"--out": tmp_path / "o.jsonl", "--errors": source}, read=[source])
    check_written_paths({"--out": tmp_path / "o.jsonl"}, inputs=[str(source), "-"])  # another file: fine


def test_an_output_the_folder_input_would_read_is_refused(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    with pytest.raises(OutputError, match="would read its own output"):
        check_written_paths({"--out": docs / "sub" / "out.txt"}, inputs=[str(docs)], globs=DEFAULT_GLOBS)
    # .jsonl is not among the default globs: an output there is not read back
    check_written_paths({"--out": docs / "out.jsonl"}, inputs=[str(docs)], globs=DEFAULT_GLOBS)
    with pytest.raises(OutputError, match="would read the stored texts"):
        check_written_paths({}, inputs=[str(docs)], globs=DEFAULT_GLOBS, texts_dir=docs / "texts")
    check_written_paths({}, inputs=[str(docs)], globs=("*.md",), texts_dir=docs / "texts")
    check_written_paths({}, inputs=[str(docs)], globs=DEFAULT_GLOBS, texts_dir=tmp_path / "texts")


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
    assert source.read_bytes() == LINES
    assert not (tmp_path / "same.jsonl.lock").exists() and not (tmp_path / "same.jsonl.engine.log").exists()
    missing = tmp_path / "nope" / "o.jsonl"
    result = runner.invoke(app, ["run", str(source), "--out", str(missing), "--model", "tiny"])
    assert result.exit_code == 2 and "does not exist" in result.output and "Traceback" not in result.output
    # An unwritable --report used to surface as a traceback after the whole run: now exit 2 up front.
    report = tmp_path / "nope" / "r.json"
    result = runner.invoke(app, ["run", str(source), "--out", str(tmp_path / "o.jsonl"), "--report", str(report)])
    assert result.exit_code == 2 and "--report" in result.output
    assert not (tmp_path / "o.jsonl").exists()
    assert "engine's own output" not in result.output  # no engine ran: no log to point at
