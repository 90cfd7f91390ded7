"""The output file: writes, overwrite protection, resume (torn lines cut, damaged files refused),
locks, error copies, and records that cannot be written as they are (never taking others along)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vllm_extract.cli.exit_codes import for_error
from vllm_extract.exceptions import LockHeldError, OutputError
from vllm_extract.output import DoneRecord, OutputWriter, Record, RecordError, read_records
from vllm_extract.readers._files import display_name

FP = "0123456789abcdef"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _rec(index: int, doc_id: str, status: str = "ok", **extra: Any) -> dict[str, Any]:
    """A valid record (the pipeline's dict form) for document ``doc_id`` whose text is ``doc_id``."""
    record: dict[str, Any] = {"id": doc_id, "index": index, "source": "in.jsonl", "text_sha256": sha(doc_id)}
    record |= {"fingerprint": FP, "status": status}
    if status == "ok":
        record["entities"] = []
    else:
        record["error"] = {"kind": "corrupt", "message": "damaged"}
    return record | extra


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _raw(*records: dict[str, Any]) -> bytes:
    return b"".join(Record.from_dict(r).to_json_bytes() + b"\n" for r in records)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(proc.stdout)


def test_writes_lines_durably(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    entity = {"type": "PERSON", "text": "Zoë 😀", "start": 0, "end": 5}
    records = [_rec(0, "a", entities=[entity]), _rec(1, "b")]
    with OutputWriter(out) as writer:
        writer.write(records)
        # Flushed once write returns: another reader sees it while the writer is still open.
        assert read_records(out) == records
        writer.write([])
        writer.write([Record.from_dict(_rec(2, "c"))])  # a Record is written as well as a dict
        assert writer.records_written == 3
    raw = out.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 3
    assert "Zoë 😀".encode() in raw  # UTF-8, not escaped
    assert _lines(out) == [*records, _rec(2, "c")]
    assert read_records(out) == _lines(out)


def test_lines_are_canonical(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    # Key order of the dict does not matter; None fields are absent; metadata is kept verbatim.
    scrambled = {"status": "ok", "entities": [], "fingerprint": FP, "source": "s", "index": 0, "id": "a"}
    with OutputWriter(out) as writer:
        writer.write([scrambled | {"line": None, "metadata": {"x": None}}])
    assert out.read_bytes() == (
        b'{"id":"a","index":0,"source":"s","fingerprint":"0123456789abcdef","status":"ok",'
        b'"entities":[],"metadata":{"x":null}}\n'
    )


def test_write_when_not_open(tmp_path: Path) -> None:
    writer = OutputWriter(tmp_path / "x.jsonl")
    with pytest.raises(OutputError):
        writer.write([_rec(0, "a")])


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(_raw(_rec(0, "old")))
    with pytest.raises(OutputError) as info:
        OutputWriter(out).open()
    assert "--overwrite" in str(info.value) and for_error(info.value) == 2
    assert out.read_bytes() == _raw(_rec(0, "old"))
    assert (tmp_path / "out.jsonl.lock").read_text() == ""  # released: kept, emptied


def test_empty_existing_file_is_not_protected(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    with OutputWriter(out) as writer:
        writer.write([_rec(0, "a")])
    assert _lines(out) == [_rec(0, "a")]


def test_overwrite_replaces(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(_raw(_rec(0, "old"), _rec(1, "old2")))
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


# -- resume: the scan --------------------------------------------------------------------------


def test_resume_reads_done_and_cuts_torn_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with OutputWriter(out) as writer:
        writer.write([_rec(0, "a"), _rec(1, "b", "error"), _rec(2, "c", line=3)])
    torn = b'{"id":"d","index":3,"status":"o'
    with open(out, "ab") as stream:
        stream.write(torn)
    good_size = out.stat().st_size - len(torn)
    # A torn last line is not a record.
    assert [r["id"] for r in read_records(out)] == ["a", "b", "c"]
    with OutputWriter(out, resume=True) as writer:
        assert writer.done == {
            0: DoneRecord("a", sha("a"), FP, "ok", 1),
            1: DoneRecord("b", sha("b"), FP, "error", 2),
            2: DoneRecord("c", sha("c"), FP, "ok", 3, from_line=True),
        }
        assert writer.done_errors == 1
        assert writer.repaired_bytes == len(torn)
        assert out.stat().st_size == good_size
        assert out.read_bytes().endswith(b"\n")
        writer.write([_rec(3, "d"), _rec(4, "e", "error")])
        assert (writer.errors_written, writer.errors_in_file) == (1, 2)
    assert [(r["index"], r["id"]) for r in _lines(out)] == [(0, "a"), (1, "b"), (2, "c"), (3, "d"), (4, "e")]
    with OutputWriter(out, resume=True) as writer:
        assert sorted(writer.done) == [0, 1, 2, 3, 4]
        assert (writer.done_errors, writer.errors_in_file) == (2, 2)  # the exit code after resume: 1
        assert writer.repaired_bytes == 0


def test_resume_cuts_unterminated_last_line_even_if_it_parses(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    good = _raw(_rec(0, "a"))
    out.write_bytes(good + _raw(_rec(1, "b"))[:-1])  # complete JSON, but its newline never made it
    with OutputWriter(out, resume=True) as writer:
        assert list(writer.done) == [0]
        assert writer.repaired_bytes == len(_raw(_rec(1, "b"))) - 1
    assert out.read_bytes() == good


def test_resume_refuses_bad_complete_line_in_the_middle(tmp_path: Path) -> None:
    # The issue's file: a good line, a garbage line, two more good lines, each newline-terminated.
    out = tmp_path / "out.jsonl"
    original = _raw(_rec(0, "a")) + b'{"id":"b",GARBAGE}\n' + _raw(_rec(2, "c"), _rec(3, "d"))
    out.write_bytes(original)
    with pytest.raises(OutputError) as info:
        OutputWriter(out, resume=True).open()
    message = str(info.value)
    assert for_error(info.value) == 2
    assert "line 2" in message and "not valid JSON" in message and "damaged" in message
    assert out.read_bytes() == original  # untouched, byte for byte: the good records after it stay
    assert (tmp_path / "out.jsonl.lock").read_text() == ""  # released


@pytest.mark.parametrize(
    ("bad_line", "why"),
    [
        (b'{"id":"c","index":2}\n', "fingerprint: Field required"),  # JSON, but not a record
        (b'{"id":"c","index":2,"source":"s","fingerprint":"0123456789abcdef","status":"ok"}\n', "'entities'"),
        (b"\n", "not valid JSON"),  # a blank complete line
        (_raw(_rec(0, "a2")), "holds index 0, expected 2"),  # a second run appended: indexes 0,1,0
    ],
)
def test_resume_refuses_damaged_line(tmp_path: Path, bad_line: bytes, why: str) -> None:
    out = tmp_path / "out.jsonl"
    original = _raw(_rec(0, "a"), _rec(1, "b")) + bad_line + _raw(_rec(3, "d"))
    out.write_bytes(original)
    with pytest.raises(OutputError, match="line 3") as info:
        OutputWriter(out, resume=True).open()
    assert why in str(info.value)
    assert out.read_bytes() == original


def test_resume_refuses_bad_complete_last_line(tmp_path: Path) -> None:
    # Complete (newline-terminated) but not JSON: damage, not a torn write; nothing is cut.
    out = tmp_path / "out.jsonl"
    original = _raw(_rec(0, "a"), _rec(1, "b")) + b'{"index": 2, "id"\n'
    out.write_bytes(original)
    with pytest.raises(OutputError, match="line 3"):
        OutputWriter(out, resume=True).open()
    assert out.read_bytes() == original


def test_resume_refuses_the_mixed_file_of_the_issue(tmp_path: Path) -> None:
    # What the old --resume left after an input changed: indexes 0,1,2,0,1,2,3.
    out = tmp_path / "out.jsonl"
    original = _raw(*(_rec(i, x) for i, x in enumerate("abc")), *(_rec(i, x) for i, x in enumerate("zabc")))
    out.write_bytes(original)
    with pytest.raises(OutputError, match=r"line 4: .*index 0, expected 3"):
        OutputWriter(out, resume=True).open()
    assert out.read_bytes() == original


def test_resume_on_missing_or_empty_file(tmp_path: Path) -> None:
    out = tmp_path / "fresh.jsonl"
    with OutputWriter(out, resume=True) as writer:
        assert (writer.done, writer.done_errors, writer.previous_settings) == ({}, 0, None)
        writer.write([_rec(0, "a")])
    assert _lines(out) == [_rec(0, "a")]


def test_settings_saved_beside_the_output(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with OutputWriter(out) as writer:
        writer.save_settings(FP, {"chunk_tokens": 1000, "model": "tiny"})
        writer.write([_rec(0, "a")])
    assert json.loads((tmp_path / "out.jsonl.run.json").read_bytes()) == {
        "fingerprint": FP,
        "settings": {"chunk_tokens": 1000, "model": "tiny"},
    }
    with OutputWriter(out, resume=True) as writer:
        assert writer.previous_settings == {"chunk_tokens": 1000, "model": "tiny"}
        writer.save_settings(FP, {"chunk_tokens": 1000, "model": "tiny", "new": 1})  # kept: the resumed run's
    assert json.loads((tmp_path / "out.jsonl.run.json").read_bytes())["settings"] == {
        "chunk_tokens": 1000,
        "model": "tiny",
    }


# -- locks -------------------------------------------------------------------------------------


def test_second_writer_gets_lock_held_error(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    lock = tmp_path / "out.jsonl.lock"
    with OutputWriter(out) as first:
        assert lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(LockHeldError) as info:
            OutputWriter(out, overwrite=True).open()
        err = info.value
        assert for_error(err) == 4
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


def test_a_symlink_to_the_output_shares_its_lock(tmp_path: Path) -> None:
    """Two runs writing one file under two names used to take two locks (named from the path as
    given), both run, and write one file: the lock is named from the real path now."""
    out = tmp_path / "out.jsonl"
    link = tmp_path / "latest.jsonl"
    link.symlink_to(out.name)  # dangling until the first run creates out.jsonl
    (tmp_path / "via").symlink_to(tmp_path, target_is_directory=True)
    for other in (link, tmp_path / "via" / "out.jsonl"):
        with OutputWriter(out, overwrite=True) as first:
            with pytest.raises(LockHeldError):
                OutputWriter(other, overwrite=True).open()
            first.write([_rec(0, "a")])
        with OutputWriter(other, resume=True) as second:  # and the other way round
            assert second.lock_path == tmp_path / "out.jsonl.lock"
            with pytest.raises(LockHeldError):
                OutputWriter(out, overwrite=True).open()
        assert _lines(out) == [_rec(0, "a")]
    assert not (tmp_path / "latest.jsonl.lock").exists()


def test_a_hard_linked_output_is_refused(tmp_path: Path) -> None:
    """A hard link has no real path to share a lock through: an output with two names is refused
    (exit 2), in every mode, and neither name is touched."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(_raw(_rec(0, "old")))
    os.link(out, tmp_path / "snapshot.jsonl")
    for name in (out, tmp_path / "snapshot.jsonl"):
        for mode in ({"overwrite": True}, {"resume": True}, {}):
            with pytest.raises(OutputError, match="2 names of one file") as info:
                OutputWriter(name, **mode).open()
            assert for_error(info.value) == 2
    assert out.read_bytes() == _raw(_rec(0, "old"))
    (tmp_path / "snapshot.jsonl").unlink()  # one name again: written as usual
    with OutputWriter(out, overwrite=True) as writer:
        writer.write([_rec(0, "new")])
    assert _lines(out) == [_rec(0, "new")]


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
    out.write_bytes(_raw(_rec(0, "a")))
    for _ in range(2):
        with pytest.raises(OutputError):
            OutputWriter(out).open()
    assert (tmp_path / "out.jsonl.lock").read_text() == ""  # released: kept, emptied
    with OutputWriter(out, resume=True) as writer:
        assert list(writer.done) == [0]


# -- the errors file ---------------------------------------------------------------------------


def test_errors_path_gets_error_records_only(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    errors = tmp_path / "errors.jsonl"
    err1 = _rec(1, "b", "error", error={"kind": "binary", "message": "NUL bytes"})
    err3 = _rec(3, "d", "error", error={"kind": "empty", "message": "empty"})
    with OutputWriter(out, errors_path=errors) as writer:
        writer.write([_rec(0, "a"), err1, _rec(2, "c")])
        writer.write([err3])
        assert _lines(errors) == [err1, err3]
    assert _lines(out) == [_rec(0, "a"), err1, _rec(2, "c"), err3]
    assert read_records(errors) == [err1, err3]  # an errors file validates too (indexes sparse)
    # Resume appends to the errors file too.
    err5 = _rec(5, "f", "error", error={"kind": "generation_failed", "message": "y"}, entities=[])
    with OutputWriter(out, resume=True, errors_path=errors) as writer:
        writer.write([_rec(4, "e"), err5])
    assert _lines(errors) == [err1, err3, err5]


def test_no_errors_file_without_errors_path(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with OutputWriter(out) as writer:
        writer.write([_rec(0, "a", "error")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.jsonl.lock"]


# -- reading -----------------------------------------------------------------------------------


def test_read_records_ignores_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(_raw(_rec(0, "a"), _rec(1, "b")) + b'{"index": 2')
    assert read_records(path) == [_rec(0, "a"), _rec(1, "b")]


def test_read_records_validates_every_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(_raw(_rec(0, "a")) + b'{"index": 1, "id": "b"}\n')
    with pytest.raises(RecordError, match=r"r\.jsonl line 2: not a valid record: source: Field required") as info:
        read_records(path)
    assert info.value.line == 2


# -- records that cannot be written as they are -------------------------------------------------


def test_file_name_not_utf8_is_written_escaped_with_its_window(tmp_path: Path) -> None:
    # os.scandir gives "memo_\udcff.txt" for the bytes b"memo_\xff.txt": orjson refuses it. The
    # record is written with the name escaped as the readers escape it; the window's other
    # records are written too, and nothing is raised.
    out = tmp_path / "out.jsonl"
    name = os.fsdecode(b"docs/memo_\xff.txt")
    bad = _rec(1, name, source=name, metadata={name: "x", "title": "caf\udce9"})
    with OutputWriter(out) as writer:
        writer.write([_rec(0, "good.txt"), bad, _rec(2, "other.txt")])
        assert (writer.records_written, writer.escaped, writer.replaced) == (3, 1, 0)
    records = read_records(out)
    assert [r["id"] for r in records] == ["good.txt", "docs/memo_\\xff.txt", "other.txt"]
    escaped = records[1]
    assert escaped["id"] == escaped["source"] == display_name(name)
    assert escaped["metadata"] == {"docs/memo_\\xff.txt": "x", "title": "caf\\xe9"}
    assert escaped["status"] == "ok" and escaped["text_sha256"] == sha(name)
    assert escaped["warnings"] == ["id, source, metadata: not valid UTF-8; undecodable bytes written as \\xNN escapes"]
    assert records[0] == _rec(0, "good.txt") and records[2] == _rec(2, "other.txt")


def test_other_lone_surrogates_are_escaped_too(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with OutputWriter(out) as writer:
        writer.write([_rec(0, "a", warnings=["half a pair: \ud83d"])])
    (record,) = read_records(out)
    assert record["warnings"][0] == "half a pair: \\ud83d"
    assert record["warnings"][1].startswith("warnings: not valid UTF-8")


def test_record_breaking_the_contract_becomes_an_internal_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out.jsonl"
    errors = tmp_path / "errors.jsonl"
    unknown_kind = _rec(1, "b", "error", error={"kind": "no_such_kind", "message": "m"}, line=7)
    not_json = _rec(2, "c", metadata={"when": object()})
    with (
        caplog.at_level(logging.ERROR, logger="vllm_extract.output.writer"),
        OutputWriter(out, errors_path=errors) as writer,
    ):
        writer.write([_rec(0, "a"), unknown_kind, not_json, _rec(3, "d")])
        assert (writer.records_written, writer.replaced, writer.errors_written) == (4, 2, 2)
    records = read_records(out)
    assert [(r["index"], r["id"], r["status"]) for r in records] == [
        (0, "a", "ok"),
        (1, "b", "error"),
        (2, "c", "error"),
        (3, "d", "ok"),
    ]
    internal = records[1]
    assert internal["error"]["kind"] == "internal"
    assert "error.kind: 'no_such_kind' is not a known value" in internal["error"]["message"]
    assert (internal["line"], internal["text_sha256"], internal["fingerprint"]) == (7, sha("b"), FP)
    assert records[2]["error"]["kind"] == "internal" and "cannot be written as JSON" in records[2]["error"]["message"]
    assert [r["id"] for r in read_records(errors)] == ["b", "c"]
    assert sum("breaks the record contract" in r.getMessage() for r in caplog.records) == 2


def test_record_missing_everything_still_gets_a_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with OutputWriter(out) as writer:
        writer.write([_rec(0, "a"), {"id": 5, "index": "x", "fingerprint": "nope"}])
    records = read_records(out)
    assert records[1] == {
        "id": "5",
        "index": 1,  # its position: it is the second line
        "source": "",
        "fingerprint": FP,  # the run's, from the record before it
        "status": "error",
        "error": records[1]["error"],
    }
    assert records[1]["error"]["kind"] == "internal"


def test_out_of_order_index_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out.jsonl"
    with caplog.at_level(logging.ERROR, logger="vllm_extract.output.writer"), OutputWriter(out) as writer:
        writer.write([_rec(0, "a"), _rec(5, "f")])
    assert any("has index 5 but is written on line 2" in r.getMessage() for r in caplog.records)
    assert [r["index"] for r in read_records(out)] == [0, 5]  # nothing is lost


def test_resume_refuses_changed_batch_settings_and_names_them() -> None:
    """Issue 20: settings that only shape batches stay out of the fingerprint, but ``--resume``
    refuses a change to them (the rest would be batched unlike the run being resumed)."""
    from vllm_extract.output import ResumeGuard

    done = {0: DoneRecord("a", sha("a"), FP, "ok", 1)}
    saved = {"decoding": "grounded", "batch.max_num_seqs": 256, "batch.reorder_window": 256}
    ResumeGuard(done, FP, settings=dict(saved), previous_settings=saved)  # the same: resumes
    changed = saved | {"batch.max_num_seqs": 8}
    with pytest.raises(OutputError, match=r"batch settings changed.*batch\.max_num_seqs 256 -> 8"):
        ResumeGuard(done, FP, settings=changed, previous_settings=saved)
    ResumeGuard({}, FP, settings=changed, previous_settings=saved)  # nothing written yet: a fresh start
