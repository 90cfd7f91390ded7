"""Exit codes: one table, each code one meaning, and the rules that pick a code."""

from __future__ import annotations

import errno
import inspect
import re

import pytest
from typer.testing import CliRunner

from vllm_extract import exceptions
from vllm_extract.cli import app
from vllm_extract.cli.exit_codes import TABLE, ExitCode, for_error, for_outcome, help_text
from vllm_extract.run.runner import RunOutcome

runner = CliRunner()


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("`", ""))


def test_the_table_has_each_code_once_and_help_shows_it() -> None:
    assert [code for code, _ in TABLE] == sorted(ExitCode)
    shown = _words(runner.invoke(app, ["--help"]).output)
    assert _words(help_text()) in shown
    for code, meaning in TABLE:
        assert f"{int(code)} {_words(meaning)}" in shown
    assert _words(help_text()) in _words(runner.invoke(app, ["run", "--help"]).output)


def test_each_error_of_the_tree_has_its_code() -> None:
    expected = {
        "VLLMClientError": ExitCode.CRASH,
        "ConfigurationError": ExitCode.USAGE,
        "InputError": ExitCode.USAGE,
        "BudgetError": ExitCode.USAGE,
        "OutputError": ExitCode.USAGE,
        "RecordError": ExitCode.USAGE,
        "UnencodableRecordError": ExitCode.USAGE,
        "ModelNotLoadedError": ExitCode.UNAVAILABLE,
        "ModelPreparationError": ExitCode.UNAVAILABLE,
        "GPUMonitorError": ExitCode.UNAVAILABLE,
        "GPUMemoryError": ExitCode.UNAVAILABLE,
        "ConnectionError": ExitCode.UNAVAILABLE,
        "LockHeldError": ExitCode.LOCKED,
        "MergeError": ExitCode.MERGE_INCOMPLETE,
        "EngineRestartsExhausted": ExitCode.STOPPED,
        "GenerationError": ExitCode.CRASH,
        "ContextOverflowError": ExitCode.CRASH,
    }
    classes = {n: c for n, c in vars(exceptions).items() if inspect.isclass(c) and n in exceptions.__all__}
    assert set(classes) == set(expected), "a new error needs its row here and, if not a crash, in _ERRORS"
    for name, cls in classes.items():
        error = cls.__new__(cls)
        assert for_error(error) == expected[name], name
    assert for_error(OSError(errno.ENOSPC, "No space left on device")) == ExitCode.CRASH
    assert for_error(KeyError("bug")) == ExitCode.CRASH


def test_each_run_outcome_has_its_code() -> None:
    assert {o: for_outcome(o) for o in RunOutcome} == {
        RunOutcome.OK: ExitCode.OK,
        RunOutcome.DOCUMENT_ERRORS: ExitCode.DOCUMENT_ERRORS,
        RunOutcome.STOPPED: ExitCode.STOPPED,
    }
    with pytest.raises(KeyError):
        for_outcome("finished")


def test_a_crash_exits_70_with_its_traceback_not_1(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # A full disk cannot be had here: the seam is the library call under `plan`.
    from vllm_extract.run import dry_run

    def full_disk(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dry_run, "plan_job", full_disk)
    result = runner.invoke(app, ["plan", str(tmp_path)])
    assert result.exit_code == 70, result.output
    assert "Traceback" in result.output and "OSError: [Errno 28] No space left on device" in result.output
    assert "crashed (exit 70)" in result.output and "--resume" in result.output

    def server_failed(*_args: object, **_kwargs: object) -> None:
        raise exceptions.GenerationError("/tokenize failed: HTTP 500")

    monkeypatch.setattr(dry_run, "plan_job", server_failed)
    result = runner.invoke(app, ["plan", str(tmp_path)])
    assert result.exit_code == 70 and "/tokenize failed" in result.output and "crashed" in result.output
    assert "Traceback" not in result.output  # an error of the tree says what happened itself


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["config", "show"], ["gpu-status", "--json"]])
def test_a_closed_standard_output_is_exit_141_without_a_word(args: list[str]) -> None:
    """``vllm-extract --help | head -1`` said "crashed (exit 70)" (``config show``) or exited 1
    (rich's help: "some documents failed"): a reader that went away is 141 now, as the shell
    reports ``cat``, with nothing on stderr. The real entry point, stdout a pipe already closed."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "vllm_extract.cli", *args], stdout=write, stderr=subprocess.PIPE, timeout=120
        )
    finally:
        os.close(write)
    assert done.returncode == 141 == ExitCode.CLOSED_PIPE, done.stderr.decode()[-2000:]
    assert done.stderr == b""
