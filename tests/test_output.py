"""The output file: writes, overwrite protection, resume with torn lines, locks, error copies."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_extract.exceptions import LockHeldError, OutputError
from vllm_extract.output import OutputWriter, read_records


def _rec(index: int, doc_id: str, status: str = "ok", **extra: object) -> dict:
    return {"index": index, "id": doc_id, "status": status, **extra}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(proc.stdout)


def test_writes_lines_durably(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    records = [_rec(0, "a", entities=[{"type": "PERSON", "text": "Zoë 😀"}]), _rec(1, "b")]
    with OutputWriter(out) as writer:
        writer.write(records)
        # Flushed once write returns: another reader sees it while the writer is still open.
        assert read_records(out) == records
        writer.write([])
        writer.write([_rec(2, "c")])
        assert writer.records_written == 3
    raw = out.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 3
    assert "Zoë 😀".encode() in raw  # UTF-8, not escaped
    assert _lines(out) == [*records, _rec(2, "c")]


def test_write_when_not_open(tmp_path: Path) -> None:
    writer = OutputWriter(tmp_path / "x.jsonl")
    with pytest.raises(OutputError):
        writer.write([_rec(0, "a")])


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"index": 0, "id": "old"}\n', encoding="utf-8")
    with pytest.raises(OutputError) as info:
        OutputWriter(out).open()
    assert "--overwrite" in str(info.value) and info.value.exit_code == 2
    assert out.read_text(encoding="utf-8") == '{"index": 0, "id": "old"}\n'
    assert (tmp_path / "out.jsonl.lock").read_text() == ""  # released: kept, emptied


def test_empty_existing_file_is_not_protected(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    with OutputWriter(out) as writer:
        writer.write([_rec(0, "a")])
    assert _lines(out) == [_rec(0, "a")]


def test_overwrite_replaces(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"index": 0, "id": "old"}\n{"index": 1, "id": "old2"}\n', encoding="utf-8")
    with OutputWriter(out, overwrite=True) as writer:
        assert writer.done == {}
        writer.write([_rec(0, "new")])
    assert _lines(out) == [_rec(0, "new")]


def test_resume_and_overwrite_contradict(tmp_path: Path) -> None:
    with pytest.raises(OutputError):
        OutputWriter(tmp_path / "o.jsonl", resume=True, overwrite=True).open()


def test_missing_output_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputError) as info:
        OutputWriter(tmp_path / "no" / "such" / "out.jsonl").open()
    assert "does not exist" in str(info.value)
    assert not (tmp_path / "no").exists()


def test_resume_reads_done_and_cuts_torn_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with OutputWriter(out) as writer:
        writer.write([_rec(0, "a"), _rec(1, "b", "error"), _rec(3, "d")])
    torn = b'{"index": 4, "id": "e", "status": "o'
    with open(out, "ab") as stream:
        stream.write(torn)
    good_size = out.stat().st_size - len(torn)
    # A torn last line is not a record.
    assert [r["id"] for r in read_records(out)] == ["a", "b", "d"]
    with OutputWriter(out, resume=True) as writer:
        assert writer.done == {0: "a", 1: "b", 3: "d"}
        assert writer.repaired_bytes == len(torn)
        assert out.stat().st_size == good_size
        assert out.read_bytes().endswith(b"\n")
        writer.write([_rec(4, "e"), _rec(2, "c")])
    assert [(r["index"], r["id"]) for r in _lines(out)] == [(0, "a"), (1, "b"), (3, "d"), (4, "e"), (2, "c")]
    with OutputWriter(out, resume=True) as writer:
        assert writer.done == {0: "a", 1: "b", 2: "c", 3: "d", 4: "e"}
        assert writer.repaired_bytes == 0


def test_resume_cuts_complete_but_unparseable_tail(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"index": 0, "id": "a"}\n{"index": 1, "id": "b"}\n{"index": 2, "id"\n')
    with OutputWriter(out, resume=True) as writer:
        assert writer.done == {0: "a", 1: "b"}
    assert out.read_bytes() == b'{"index": 0, "id": "a"}\n{"index": 1, "id": "b"}\n'


def test_resume_on_missing_or_empty_file(tmp_path: Path) -> None:
    out = tmp_path / "fresh.jsonl"
    with OutputWriter(out, resume=True) as writer:
        assert writer.done == {}
        writer.write([_rec(0, "a")])
    assert _lines(out) == [_rec(0, "a")]


def test_second_writer_gets_lock_held_error(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    lock = tmp_path / "out.jsonl.lock"
    with OutputWriter(out) as first:
        assert lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(LockHeldError) as info:
            OutputWriter(out, overwrite=True).open()
        err = info.value
        assert err.exit_code == 4
        assert err.pid == os.getpid()
        assert str(os.getpid()) in str(err)
        # The refused writer left the holder's lock alone.
        assert lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(LockHeldError):
            OutputWriter(out, resume=True).open()
        first.write([_rec(0, "a")])
    assert lock.read_text() == ""  # released: the file stays, emptied
    assert _lines(out) == [_rec(0, "a")]
    # Free again once closed.
    with OutputWriter(out, overwrite=True):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert lock.read_text() == ""  # released: the file stays, emptied


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    lock = tmp_path / "out.jsonl.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, f'{os.getpid()}\\n'.encode())\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(LockHeldError) as info:
            OutputWriter(out).open()
        assert info.value.pid == holder.pid
        assert f"pid {holder.pid}" in str(info.value)
        assert not out.exists()
    finally:
        holder.communicate("", timeout=10)
    # The holder died without removing its lock file: a stale lock, taken over.
    with OutputWriter(out) as writer:
        writer.write([_rec(0, "a")])
        assert lock.read_text() == f"{os.getpid()}\n"
    assert lock.read_text() == ""  # released: the file stays, emptied


def test_stale_lock_file_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out.jsonl"
    lock = tmp_path / "out.jsonl.lock"
    dead = _dead_pid()
    lock.write_text(f"{dead}\n")
    with caplog.at_level(logging.WARNING, logger="vllm_extract.output.writer"), OutputWriter(out) as writer:
        assert lock.read_text() == f"{os.getpid()}\n"
        writer.write([_rec(0, "a")])
    assert any(str(dead) in r.getMessage() for r in caplog.records)
    assert lock.read_text() == ""  # released: the file stays, emptied
    assert _lines(out) == [_rec(0, "a")]


def test_lock_released_when_open_fails(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"index": 0, "id": "a"}\n', encoding="utf-8")
    for _ in range(2):
        with pytest.raises(OutputError):
            OutputWriter(out).open()
    assert (tmp_path / "out.jsonl.lock").read_text() == ""  # released: kept, emptied
    with OutputWriter(out, resume=True) as writer:
        assert writer.done == {0: "a"}


def test_errors_path_gets_error_records_only(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    errors = tmp_path / "errors.jsonl"
    err1 = _rec(1, "b", "error", error={"kind": "binary", "message": "NUL bytes"})
    err3 = _rec(3, "d", "error", error={"kind": "empty", "message": "empty"})
    with OutputWriter(out, errors_path=errors) as writer:
        writer.write([_rec(0, "a"), err1, _rec(2, "c", "skipped")])
        writer.write([_rec(4, "e")])
        writer.write([err3])
        assert _lines(errors) == [err1, err3]
    assert _lines(out) == [_rec(0, "a"), err1, _rec(2, "c", "skipped"), _rec(4, "e"), err3]
    assert _lines(errors) == [err1, err3]
    # Resume appends to the errors file too.
    err5 = _rec(5, "f", "error", error={"kind": "x", "message": "y"})
    with OutputWriter(out, resume=True, errors_path=errors) as writer:
        writer.write([err5, _rec(6, "g")])
    assert _lines(errors) == [err1, err3, err5]


def test_no_errors_file_without_errors_path(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with OutputWriter(out) as writer:
        writer.write([_rec(0, "a", "error")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.jsonl.lock"]


def test_read_records_ignores_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"index": 0, "id": "a"}\n{"index": 1, "id": "b"}\n{"index": 2')
    assert read_records(path) == [{"index": 0, "id": "a"}, {"index": 1, "id": "b"}]
