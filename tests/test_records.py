"""The record contract (model, error kinds, published schema), resume that cannot mix runs, and
incremental reuse of earlier outputs."""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from vllm_extract.cli.exit_codes import for_error
from vllm_extract.exceptions import InputError, OutputError
from vllm_extract.output import (
    DoneRecord,
    ErrorKind,
    OutputWriter,
    Record,
    RecordError,
    ResumeGuard,
    ReuseIndex,
    check_resume,
    parse_record,
    read_records,
)
from vllm_extract.output.records import ERROR_KIND_DOCS, SCHEMA_COMMAND, records_markdown, render_record_schema
from vllm_extract.output.resume import describe_settings_change, same_path, write_run_settings
from vllm_extract.readers import Document, SkippedFile, iter_documents

ROOT = Path(__file__).resolve().parent.parent
FP = "0123456789abcdef"
FP2 = "fedcba9876543210"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def rec(index: int, doc_id: str, text: str | None = None, status: str = "ok", **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"id": doc_id, "index": index, "source": "in.jsonl", "text_sha256": sha(text or doc_id)}
    record |= {"fingerprint": FP, "status": status}
    if status == "ok":
        record["entities"] = [{"type": "ORG", "text": doc_id, "start": 0, "end": len(doc_id)}]
    else:
        record["error"] = {"kind": "generation_failed", "message": "1 of 1 chunks failed"}
    return record | extra


def write(path: Path, *records: dict[str, Any]) -> None:
    with OutputWriter(path, overwrite=True) as writer:
        writer.write(records)


# -- the model ---------------------------------------------------------------------------------


FULL = {
    "id": "report.pdf",
    "index": 4,
    "source": "docs/report.pdf",
    "line": 2,
    "duplicate_id": True,
    "reused": True,
    "text_sha256": sha("Acme\n\nBerlin"),
    "fingerprint": FP,
    "status": "error",
    "error": {"kind": "generation_failed", "message": "1 of 2 chunks failed: chunk 1: HTTP 500"},
    "entities": [
        {"type": "ORG", "text": "Acme", "start": 0, "end": 4, "page": 1},
        {"type": "LOC", "text": "Berlin", "start": -1, "end": -1, "grounded": False},
    ],
    "chunks": 2,
    "usage": {"prompt_tokens": 300, "completion_tokens": 40},
    "ungrounded": 1,
    "truncated_chunks": [0],
    "warnings": ["chunk 0: repaired JSON"],
    "metadata": {"title": None, "page_count": 2, "nested": {"a": [1, None]}},
    "text": "Acme\n\nBerlin",
    "pages": [[0, 4], [6, 12]],
}


def test_every_field_round_trips_canonically() -> None:
    line = json.dumps(FULL, ensure_ascii=False, separators=(",", ":")).encode()
    record = parse_record(line + b"\n")
    assert record.to_json_bytes() == line  # declared order is the order written
    assert parse_record(record.to_json_bytes()) == record
    assert record.error is not None and record.error.kind is ErrorKind.GENERATION_FAILED
    assert record.pages == [(0, 4), (6, 12)]
    assert record.to_dict() == FULL


def test_minimal_records() -> None:
    ok = {"id": "a", "index": 0, "source": "s", "fingerprint": FP, "status": "ok", "entities": []}
    bad_input = {"id": "s:3", "index": 0, "source": "s", "line": 3, "fingerprint": FP, "status": "error"}
    bad_input["error"] = {"kind": "malformed_json", "message": "line 3 is not valid JSON"}
    for data in (ok, bad_input):
        assert Record.from_dict(data).to_dict() == data


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"index": "0"}, "index: Input should be a valid integer"),  # strict: no coercion
        ({"index": 1.0}, "index: Input should be a valid integer"),
        ({"index": -1}, "index: Input should be greater than or equal to 0"),
        ({"line": None}, "line is null"),  # absent, never null
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"fingerprint": "XYZ"}, "fingerprint: String should match pattern"),
        ({"text_sha256": "abc"}, "text_sha256: String should match pattern"),
        ({"status": "skipped"}, "status: Input should be 'ok' or 'error'"),
        ({"entities": None}, "entities is null"),
        ({"duplicate_id": False}, "duplicate_id: Input should be True"),
        ({"entities": [{"type": "X", "text": "x", "start": 5, "end": 2}]}, "entities.0: entity span [5, 2) is not"),
        ({"entities": [{"type": "X", "text": "x", "start": -1, "end": -1}]}, "entities.0: entity span [-1, -1) is"),
        (
            {"entities": [{"type": "X", "text": "x", "start": 0, "end": 1, "grounded": False}]},
            "entities.0: an ungrounded entity has start and end -1",
        ),
        (
            {"entities": [{"type": "X", "text": "x", "start": 0, "end": 1, "grounded": None}]},
            "entities.0.grounded is null",
        ),
        ({"status": "error"}, "status 'error' says why in 'error'"),
        ({"error": {"kind": "corrupt", "message": "m"}}, "status 'ok' has no 'error'"),
        ({"pages": [[0, 5], [3, 9]]}, "page 2 span [3, 9) is reversed or overlaps"),
        ({"pages": [[0, 5]], "entities": [{"type": "X", "text": "x", "start": 0, "end": 1, "page": 2}]}, "page 2"),
    ],
)
def test_invalid_records_are_refused(change: dict[str, Any], why: str) -> None:
    data = {"id": "a", "index": 0, "source": "s", "fingerprint": FP, "status": "ok", "entities": []} | change
    with pytest.raises(RecordError) as info:
        parse_record(json.dumps(data).encode(), number=7)
    assert why in str(info.value)
    assert str(info.value).startswith("line 7: ") and info.value.line == 7


def test_unknown_error_kind_is_refused() -> None:
    data = {"id": "a", "index": 0, "source": "s", "fingerprint": FP, "status": "error"}
    with pytest.raises(RecordError, match=r"error\.kind: 'oops' is not a known value"):
        parse_record(json.dumps(data | {"error": {"kind": "oops", "message": "m"}}))


def test_not_json_and_not_objects() -> None:
    with pytest.raises(RecordError, match="not valid JSON"):
        parse_record(b'{"id":"b",GARBAGE}')
    with pytest.raises(RecordError, match="a JSON list, not an object"):
        parse_record(b"[1, 2]")


# -- error kinds -------------------------------------------------------------------------------


def _kinds_produced() -> set[str]:
    """Every error kind literal the readers, the pipeline and the runner produce: the first argument
    of ``.bad(...)``/``_Unreadable(...)``, the fourth of ``BadInput(...)``, a ``"kind": "..."``
    dict entry, and ``("kind", message)`` tuples returned or stored as an error."""
    files = [*sorted((ROOT / "vllm_extract" / "readers").glob("*.py"))]
    files += sorted((ROOT / "vllm_extract" / "run").glob("*.py"))
    kinds: set[str] = set()

    def literal(node: ast.AST | None) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            kinds.add(node.value)
        elif isinstance(node, ast.IfExp):  # "not_utf8" if ... else "malformed_json"
            literal(node.body)
            literal(node.orelse)
        elif isinstance(node, ast.Name):  # kind = ...; BadInput(..., kind, ...)
            for value in assigned.get(node.id, []):
                literal(value)

    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                assigned.setdefault(node.targets[0].id, []).append(node.value)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                position = {"bad": 0, "_Unreadable": 0, "BadInput": 3}.get(name)
                if position is not None and len(node.args) > position:
                    literal(node.args[position])
                for keyword in node.keywords:
                    if keyword.arg == "kind" and name in ("bad", "_Unreadable", "BadInput"):
                        literal(keyword.value)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "kind":
                        literal(value)
            elif isinstance(node, ast.Return | ast.Assign) and isinstance(node.value, ast.Tuple):
                targets = node.targets if isinstance(node, ast.Assign) else []
                stored_as_error = any(isinstance(t, ast.Attribute) and t.attr == "error" for t in targets)
                if (isinstance(node, ast.Return) or stored_as_error) and len(node.value.elts) == 2:
                    first = node.value.elts[0]
                    if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.isidentifier():
                        literal(first)
    return kinds


def test_error_kind_lists_every_kind_the_code_produces() -> None:
    produced = _kinds_produced()
    assert len(produced) >= 15, f"the scan found too few kinds, it is broken: {sorted(produced)}"
    missing = produced - {k.value for k in ErrorKind}
    assert not missing, f"add these to ErrorKind (vllm_extract/output/records.py) and ERROR_KIND_DOCS: {missing}"


def test_every_error_kind_is_documented() -> None:
    assert set(ERROR_KIND_DOCS) == set(ErrorKind)
    table = records_markdown()
    for kind in ErrorKind:
        assert f"| `{kind.value}` |" in table
    for field in Record.model_fields:
        assert f"| `{field}` |" in table


# -- the published schema ----------------------------------------------------------------------


def test_published_schema_is_up_to_date() -> None:
    path = ROOT / "schema" / "record.schema.json"
    current = path.read_bytes() if path.exists() else b""
    assert current == render_record_schema(), f"schema/record.schema.json is stale; regenerate: {SCHEMA_COMMAND}"


def test_published_schema_agrees_with_the_model() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "schema" / "record.schema.json").read_bytes())
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    good = [FULL, rec(0, "a"), rec(1, "b", status="error")]
    for record in good:
        assert not list(validator.iter_errors(record))
    bad = [
        rec(0, "a") | {"line": None},
        rec(0, "a") | {"surprise": 1},
        rec(0, "a", status="error") | {"error": {"kind": "oops", "message": "m"}},
        {k: v for k, v in rec(0, "a").items() if k != "fingerprint"},
        rec(0, "a") | {"pages": [[0, 1, 2]]},
    ]
    for record in bad:
        assert list(validator.iter_errors(record)), record
        with pytest.raises(RecordError):
            parse_record(json.dumps(record))


# -- resume: the check -------------------------------------------------------------------------


def done_of(*records: dict[str, Any]) -> dict[int, DoneRecord]:
    return {r["index"]: DoneRecord.of(Record.from_dict(r), n) for n, r in enumerate(records, 1)}


ABC = [(0, "a", sha("a")), (1, "b", sha("b")), (2, "c", sha("c"))]


def test_same_inputs_pass() -> None:
    done = done_of(rec(0, "a"), rec(1, "b"))
    check_resume(done, FP, ABC)  # a killed run: 2 of 3 done
    check_resume(done_of(rec(0, "a"), rec(1, "b"), rec(2, "c")), FP, ABC)  # a finished run
    check_resume({}, FP, ABC)  # nothing done yet


def test_input_changed_between_a_killed_run_and_resume() -> None:
    # The issue: run over a, b, c; then insert z at the front and change b's text; --resume.
    done = done_of(rec(0, "a"), rec(1, "b"), rec(2, "c"))
    changed = [(0, "z", sha("z")), (1, "a", sha("a")), (2, "b", sha("b, edited")), (3, "c", sha("c"))]
    with pytest.raises(OutputError) as info:
        check_resume(done, FP, changed, out="out.jsonl")
    message = str(info.value)
    assert for_error(info.value) == 2
    assert message.startswith("cannot resume out.jsonl: the inputs changed since the run being resumed: ")
    assert f"document 0 is now 'z' (text sha256 {sha('z')[:12]}…), was 'a' (text sha256 {sha('a')[:12]}…)" in message
    assert "(output line 1)" in message and "--overwrite" in message and "--reuse" in message


def test_changed_text_is_named() -> None:
    done = done_of(rec(0, "a"), rec(1, "b"), rec(2, "c"))
    changed = [(0, "a", sha("a")), (1, "b", sha("b, edited")), (2, "c", sha("c"))]
    with pytest.raises(OutputError) as info:
        check_resume(done, FP, changed)
    assert f"document 1 ('b') has different text: sha256 {sha('b, edited')[:12]}…, was {sha('b')[:12]}…" in str(
        info.value
    )


def test_bad_input_that_became_readable_is_a_change() -> None:
    bad = {"id": "x.txt", "index": 0, "source": "x.txt", "fingerprint": FP, "status": "error"}
    done = done_of(bad | {"error": {"kind": "unreadable", "message": "permission denied"}})
    check_resume(done, FP, [(0, "x.txt", None)])  # still unreadable: the same
    with pytest.raises(
        OutputError, match=r"document 0 \('x.txt'\) has different text: .*was none \(no text was read\)"
    ):
        check_resume(done, FP, [(0, "x.txt", sha("now readable"))])


def test_resume_refuses_a_bad_line_that_changed(tmp_path: Path, misbehaving_server: Any, tiny_model_path: Path) -> None:
    """Issue 21: a bad JSONL line has no text to hash, so its error record was kept by --resume
    after the line changed. The line's own hash (``line_sha256``) is its identity now. The whole
    path: reader, pipeline, writer, resume scan, check (a loopback server; nothing is generated)."""
    import asyncio

    from vllm_extract.config import Settings, VLLMConfig
    from vllm_extract.run.runner import RunOptions, run_job

    server = misbehaving_server()
    settings = Settings(VLLMConfig(model=str(tiny_model_path), base_url=server.url, max_completion_tokens=16))
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b'{"id": "a", "body": "no text field"}\n{"id": "b", "text": 5}\n')

    def run(**options: Any) -> Any:
        return asyncio.run(run_job([str(src)], out, settings, RunOptions(backend="http", **options)))

    run()
    first = read_records(out)
    assert [(r["id"], r["error"]["kind"]) for r in first] == [("a", "missing_text"), ("b", "text_not_string")]
    assert first[0]["line_sha256"] == sha('{"id": "a", "body": "no text field"}') and "text_sha256" not in first[0]
    assert run(resume=True).summary.skipped_done == 2  # unchanged: nothing to redo
    src.write_bytes(b'{"id": "a", "body": "still no text field"}\n{"id": "b", "text": 5}\n')
    with pytest.raises(OutputError, match=r"document 0 \('a'\) is a different line now"):
        run(resume=True)
    assert read_records(out) == first


def test_removed_documents_are_refused() -> None:
    done = done_of(rec(0, "a"), rec(1, "b"), rec(2, "c"))
    with pytest.raises(OutputError, match="holds 3 records but the inputs now have only 2 documents"):
        check_resume(done, FP, ABC[:2])


def test_fingerprint_change_is_refused_naming_the_setting() -> None:
    done = done_of(rec(0, "a"), rec(1, "b"))
    before = {"chunk_tokens": 1000, "model": "tiny", "instructions": "x" * 200, "fingerprint": FP}
    after = {"chunk_tokens": 800, "model": "tiny", "instructions": "y" * 200, "fingerprint": FP2}
    with pytest.raises(OutputError) as info:
        check_resume(done, FP2, ABC, settings=after, previous_settings=before)
    message = str(info.value)
    assert "settings changed since the run being resumed: chunk_tokens 1000 -> 800, instructions changed" in message
    assert f"line 1 has fingerprint {FP}, this run's is {FP2}" in message
    with pytest.raises(OutputError, match="which setting changed is unknown"):
        check_resume(done, FP2, ABC)  # the earlier run saved no settings
    with pytest.raises(OutputError, match="no saved setting differs: the model's files or vllm-extract's version"):
        check_resume(done, FP2, ABC, settings=before, previous_settings=before)


def test_a_file_mixing_fingerprints_is_refused() -> None:
    done = done_of(rec(0, "a"), rec(1, "b", fingerprint=FP2))
    with pytest.raises(OutputError, match=f"line 2 has fingerprint {FP2}, this run's is {FP}"):
        ResumeGuard(done, FP)


def test_describe_settings_change() -> None:
    old = {"a": 1, "b": [1, 2], "gone": True, "same": "x"}
    new = {"a": 2, "b": [1, 2], "added": "v", "same": "x"}
    assert describe_settings_change(old, new) == ["a 1 -> 2", "added added ('v')", "gone removed (was true)"]


def test_guard_streams_and_says_which_items_are_done() -> None:
    guard = ResumeGuard(done_of(rec(0, "a"), rec(1, "b")), FP)
    assert [guard.check(i, d, s) for i, d, s in ABC] == [True, True, False]
    guard.finish()


def test_path_spelling() -> None:
    assert same_path("docs/a.txt", "/data/docs/a.txt")
    assert same_path("./docs/a.txt", "docs/a.txt")
    assert same_path("docs//sub/../a.txt", "docs/a.txt")
    assert not same_path("docs/a.txt", "/data/other/a.txt")
    assert not same_path("a.txt", "/data/ba.txt")
    assert not same_path("../docs/a.txt", "/x/docs/a.txt")


def test_file_ids_spelled_differently_still_resume() -> None:
    done = done_of(rec(0, "docs/a.txt", "A"), rec(1, "docs/b.txt", "B"))
    check_resume(done, FP, [(0, "/data/docs/a.txt", sha("A")), (1, "/data/docs/b.txt", sha("B"))])
    with pytest.raises(OutputError, match=r"document 1 \('/data/docs/b\.txt'\) has different text"):
        check_resume(done, FP, [(0, "/data/docs/a.txt", sha("A")), (1, "/data/docs/b.txt", sha("B2"))])
    # A JSONL id is data, not a path: no spelling rule.
    jsonl = done_of(rec(0, "docs/a.txt", "A", line=1))
    with pytest.raises(OutputError, match=r"document 0 is now '/data/docs/a\.txt'"):
        check_resume(jsonl, FP, [(0, "/data/docs/a.txt", sha("A"))])


def _inputs(*args: str) -> list[tuple[int, str, str | None]]:
    return [
        (d.index, d.id, sha(d.text) if isinstance(d, Document) else None)
        for d in iter_documents(args)
        if not isinstance(d, SkippedFile)
    ]


def test_folder_spelled_relative_then_absolute_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Real reader ids: the first run named the folder "docs", the resumed one "/…/docs/".
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text("Alpha GmbH", encoding="utf-8")
    (docs / "sub" / "b.txt").write_text("Beta AG", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    first = _inputs("docs")
    assert [i for _, i, _ in first] == ["docs/a.txt", "docs/sub/b.txt"]
    done = done_of(*(rec(i, d, source=d) | {"text_sha256": s} for i, d, s in first[:1]))
    check_resume(done, FP, _inputs(str(docs) + "/"))
    check_resume(done, FP, _inputs("./docs"))


def test_writer_and_guard_together(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    write(out, rec(0, "a"), rec(1, "b", status="error"))
    original = out.read_bytes()
    with OutputWriter(out, resume=True) as writer:
        with pytest.raises(OutputError, match="document 0 is now 'z'"):
            check_resume(writer.done, FP, [(0, "z", sha("z")), *ABC], out=out)
        assert writer.done_errors == 1
    assert out.read_bytes() == original


# -- reuse -------------------------------------------------------------------------------------


def test_reuse_index_lookups(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first, second = tmp_path / "night1.jsonl", tmp_path / "night2.jsonl"
    write(first, rec(0, "a", line=1, duplicate_id=True), rec(1, "b"), rec(2, "c", status="error"))
    write(second, rec(0, "a", entities=[]), rec(1, "d"), rec(2, "e", fingerprint=FP2))
    with open(second, "ab") as stream:
        stream.write(b'{"id":"torn"')
    index = ReuseIndex.load([first, second])
    assert len(index) == 4  # a (first file wins), b, d, e; c is an error: never reused
    assert (index.records, index.errors_skipped, index.damaged_lines) == (6, 1, 0)

    hit = index.lookup("a", sha("a"), FP)
    assert hit is not None
    expected = {k: v for k, v in rec(0, "a").items() if k not in ("line", "duplicate_id")} | {"reused": True}
    assert hit == expected  # from the first file (the second's has no entities); line/duplicate_id dropped
    hit["index"] = 9  # a copy: the caller changes it
    assert index.lookup("a", sha("a"), FP) == expected
    Record.from_dict(hit)  # ready to write
    assert index.lookup("b", sha("b"), FP) is not None
    assert index.lookup("b", sha("b, edited"), FP) is None  # text changed
    assert index.lookup("b", sha("b"), FP2) is None  # settings changed
    assert index.lookup("c", sha("c"), FP) is None  # an error record
    assert index.lookup("new", sha("new"), FP) is None
    assert index.lookup("b", None, FP) is None  # a bad input has no text to match
    assert index.lookup("e", sha("e"), FP2) is not None

    only = ReuseIndex.load([first, second], fingerprint=FP)
    assert (len(only), only.other_fingerprints) == (3, 1)


def test_reuse_of_another_dtype_names_it_and_says_to_pin_dtype(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 19: an output made on a CPU with bf16 cannot be reused on one without (float32 chosen):
    the warning names the dtype and tells a mixed fleet to pin --dtype."""
    old = tmp_path / "box-a.jsonl"
    write(old, rec(0, "a", fingerprint=FP2), rec(1, "b", fingerprint=FP2))
    write_run_settings(old, FP2, {"dtype": "bfloat16", "chunk_tokens": 2000, "batch.max_num_batched_tokens": 1408})
    now = {"dtype": "float32", "chunk_tokens": 2000, "batch.max_num_batched_tokens": 768}
    with caplog.at_level(logging.WARNING, logger="vllm_extract.output.resume"):
        index = ReuseIndex.load([old], fingerprint=FP, settings=now)
    assert (len(index), index.other_fingerprints) == (0, 2)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"--reuse {old}: 2 record(s) were made with other settings (dtype 'bfloat16' -> ")
    assert "batch." not in warning  # batch settings do not stop a reuse
    assert "pin one with --dtype" in warning
    caplog.clear()
    write_run_settings(old, FP2, {"dtype": "float32", "chunk_tokens": 1000})
    with caplog.at_level(logging.WARNING, logger="vllm_extract.output.resume"):
        ReuseIndex.load([old], fingerprint=FP, settings=now)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "chunk_tokens 1000 -> 2000" in warning and "--dtype" not in warning


def test_resume_refused_for_another_dtype_says_to_pin_it() -> None:
    with pytest.raises(OutputError) as info:
        ResumeGuard(
            done_of(rec(0, "a", fingerprint=FP2)),
            FP,
            settings={"dtype": "float32"},
            previous_settings={"dtype": "bfloat16"},
        )
    assert "dtype 'bfloat16' -> 'float32'" in str(info.value) and "--dtype" in (info.value.hint or "")


def test_reuse_skips_damaged_lines_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "old.jsonl"
    path.write_bytes(
        Record.from_dict(rec(0, "a")).to_json_bytes()
        + b'\n{"id":"b",GARBAGE}\n{"id":"c","index":2}\n'
        + Record.from_dict(rec(3, "d")).to_json_bytes()
        + b"\n"
    )
    with caplog.at_level(logging.WARNING, logger="vllm_extract.output.resume"):
        index = ReuseIndex.load([path])
    assert (len(index), index.damaged_lines) == (2, 2)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"--reuse {path}: skipped 2 damaged lines (2, 3); those documents are extracted again"]


def test_reuse_file_errors(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    write(out, rec(0, "a"))
    with pytest.raises(InputError, match="is the output file itself"):
        ReuseIndex.load([tmp_path / "." / "out.jsonl"], out=out)
    with pytest.raises(InputError, match="cannot read --reuse") as info:
        ReuseIndex.load([tmp_path / "missing.jsonl"], out=out)
    assert for_error(info.value) == 2


def test_reuse_file_changed_after_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "old.jsonl"
    write(path, rec(0, "a"), rec(1, "b"))
    index = ReuseIndex.load([path])
    write(path, rec(0, "b"), rec(1, "a"))
    with caplog.at_level(logging.WARNING, logger="vllm_extract.output.resume"):
        assert index.lookup("a", sha("a"), FP) is None
    assert "changed since it was read" in caplog.text


def test_reused_record_written_into_a_new_run(tmp_path: Path) -> None:
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    write(old, rec(0, "a", source="old.jsonl", line=1), rec(1, "b", source="old.jsonl", line=2))
    index = ReuseIndex.load([old], out=new)
    copied = index.lookup("b", sha("b"), FP)
    assert copied is not None
    with OutputWriter(new) as writer:
        writer.write([rec(0, "z", source="new.jsonl", line=1), copied | {"index": 1, "source": "new.jsonl", "line": 2}])
    records = read_records(new)
    assert records[1] == rec(1, "b", source="new.jsonl", line=2) | {"reused": True}
    assert os.path.getsize(new) > 0
