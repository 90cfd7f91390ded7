"""Reading inputs: JSONL, folders, text files, stdin, and every kind of bad input."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vllm_extract.cli.exit_codes import for_error
from vllm_extract.exceptions import InputError
from vllm_extract.readers import BadInput, Document, SkippedFile, count_documents, iter_documents


def _jsonl(path: Path, lines: list[bytes | str | dict]) -> Path:
    data = b""
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line, ensure_ascii=False)
        if isinstance(line, str):
            line = line.encode()
        data += line + b"\n"
    path.write_bytes(data)
    return path


def _items(*inputs: str | Path, **kwargs) -> list:
    return list(iter_documents([str(i) for i in inputs], **kwargs))


# --- JSONL -----------------------------------------------------------------------------------


def test_jsonl_documents_with_ids_and_metadata(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "a.jsonl",
        [
            {"id": "doc-1", "text": "First text.", "lang": "en", "meta": {"k": [1, 2]}},
            {"id": 7, "text": "Second text."},
            {"text": "No id here."},
        ],
    )
    items = _items(path)
    assert items == [
        Document("doc-1", "First text.", str(path), 0, {"lang": "en", "meta": {"k": [1, 2]}}, line=1),
        Document("7", "Second text.", str(path), 1, {}, line=2),
        Document(f"{path}:3", "No id here.", str(path), 2, {}, line=3),
    ]


def test_a_numeric_id_is_kept_exactly_as_written(tmp_path: Path) -> None:
    """Issue 21: orjson reads an integer beyond 64 bits as a float, and the id was then silently
    replaced by ``file:line``, so the record could not be joined back to its source."""
    path = tmp_path / "big.jsonl"
    path.write_bytes(
        b'{"id": 18446744073709551616, "text": "a"}\n'
        b'{"id": -123456789012345678901234567890, "text": "b"}\n'
        b'{"id": 2.50, "text": "c"}\n'
        b'{"id": 18446744073709551615, "text": "d"}\n'  # the largest orjson reads as an int
        b'{"id": 18446744073709551616, "txt": "e"}\n'  # a bad line keeps it too
    )
    assert [i.id for i in _items(path)] == [
        "18446744073709551616",
        "-123456789012345678901234567890",
        "2.50",
        "18446744073709551615",
        "18446744073709551616",
    ]


def test_a_bad_line_carries_the_hash_of_its_bytes(tmp_path: Path) -> None:
    """A bad line has no text to hash: its bytes (without the newline) are its identity for
    --resume, an over-long one's too (hashed while it is skipped, never held whole)."""
    path = tmp_path / "bad.jsonl"
    long_line = b'{"text": "' + b"x" * 300 + b'"}'
    path.write_bytes(b'{"id": "a", "text": \r\n' + long_line + b'\n{"text": "ok"}\n')
    bad, too_long, good = _items(path, max_line_bytes=100)
    assert bad.kind == "malformed_json" and bad.line_sha256 == hashlib.sha256(b'{"id": "a", "text": \r').hexdigest()
    assert too_long.kind == "line_too_long" and too_long.line_sha256 == hashlib.sha256(long_line).hexdigest()
    assert isinstance(good, Document)


def test_jsonl_custom_id_and_text_fields(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "b.ndjson",
        [{"doc_no": "X1", "body": "Body one", "text": "not this", "id": "ignored-id"}],
    )
    (doc,) = _items(path, id_field="doc_no", text_field="body")
    assert isinstance(doc, Document)
    assert doc.id == "X1"
    assert doc.text == "Body one"
    # Every other field, including the default id/text names, is metadata.
    assert doc.metadata == {"text": "not this", "id": "ignored-id"}


def test_jsonl_custom_text_field_missing_is_bad(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "has text but not body"}])
    (bad,) = _items(path, text_field="body")
    assert isinstance(bad, BadInput)
    assert (bad.kind, bad.line, bad.id) == ("missing_text", 1, "a")
    assert "'body'" in bad.message


def test_jsonl_blank_lines_skipped_but_counted(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "one"}, "", "   ", {"text": "two"}])
    items = _items(path)
    assert [(i.text, i.line, i.index) for i in items] == [("one", 1, 0), ("two", 4, 1)]


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b'{"id": "x", "text": "unterminated', "malformed_json"),
        (b"not json at all", "malformed_json"),
        (b'["a", "list"]', "not_object"),
        (b"42", "not_object"),
        (b'"just a string"', "not_object"),
        (b'{"id": "x", "title": "no text"}', "missing_text"),
        (b'{"id": "x", "text": ""}', "empty_text"),
        (b'{"id": "x", "text": "  \\n\\t "}', "empty_text"),
        (b'{"id": "x", "text": 12}', "text_not_string"),
        (b'{"id": "x", "text": ["a"]}', "text_not_string"),
        (b'{"id": "x", "text": null}', "text_not_string"),
        (b'{"id": "x", "text": "caf\xe9"}', "not_utf8"),
        (b'{"id": "x", "text": "\xff\xfe bad"}', "not_utf8"),
    ],
)
def test_each_bad_line_is_one_bad_input_and_run_continues(tmp_path: Path, line: bytes, kind: str) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", [{"id": "before", "text": "ok 1"}, line, {"text": "ok 2"}])
    items = _items(path)
    assert len(items) == 3
    first, bad, last = items
    assert isinstance(first, Document) and first.text == "ok 1" and first.index == 0
    assert isinstance(bad, BadInput)
    assert bad.kind == kind
    assert bad.line == 2
    assert bad.index == 1
    assert bad.source == str(path)
    assert "line 2" in bad.message
    assert isinstance(last, Document)
    assert (last.text, last.line, last.index, last.id) == ("ok 2", 3, 2, f"{path}:3")


def test_bad_line_keeps_its_id_when_it_has_one(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "e.jsonl", [{"id": "known", "text": 5}, "[1]"])
    bad1, bad2 = _items(path)
    assert bad1.id == "known"
    assert bad2.id == f"{path}:2"


def test_line_over_max_line_bytes(tmp_path: Path) -> None:
    long_line = json.dumps({"id": "big", "text": "x" * 5000}).encode()
    assert len(long_line) > 5000
    path = _jsonl(tmp_path / "long.jsonl", [{"text": "a"}, long_line, {"id": "after", "text": "good"}])
    items = _items(path, max_line_bytes=1000)
    assert len(items) == 3
    bad = items[1]
    assert isinstance(bad, BadInput)
    assert (bad.kind, bad.line, bad.index) == ("line_too_long", 2, 1)
    assert str(len(long_line) + 1) in bad.message  # the whole line (with newline) was measured
    good = items[2]
    assert isinstance(good, Document)
    assert (good.id, good.text, good.line, good.index) == ("after", "good", 3, 2)


def test_line_exactly_at_limit_is_read(tmp_path: Path) -> None:
    line = json.dumps({"text": "y" * 100}).encode()
    path = _jsonl(tmp_path / "edge.jsonl", [line, line + b" "])
    items = _items(path, max_line_bytes=len(line))
    assert isinstance(items[0], Document)
    assert isinstance(items[1], BadInput) and items[1].kind == "line_too_long" and items[1].line == 2


def test_a_bom_does_not_count_toward_the_first_lines_limit(tmp_path: Path) -> None:
    # A BOM used to be stripped from the limit + 1 bytes read, so an over-long first line looked
    # short, was parsed cut, and its tail became a second record, shifting every later index.
    long_line = json.dumps({"id": "a", "text": "Alpha one two three four five six seven."}).encode()
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + long_line + b'\n{"id": "b", "text": "Beta."}\n')
    items = _items(path, max_line_bytes=40)
    assert [(type(i), i.line, i.index) for i in items] == [(BadInput, 1, 0), (Document, 2, 1)]
    assert items[0].kind == "line_too_long" and items[1].id == "b"
    exact = tmp_path / "exact.jsonl"  # a first line exactly at the limit, after its BOM, is read
    exact.write_bytes(b"\xef\xbb\xbf" + long_line + b"\n")
    assert [i.id for i in _items(exact, max_line_bytes=len(long_line))] == ["a"]


def test_long_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "tail.jsonl"
    path.write_bytes(b'{"text": "a"}\n' + b'{"text": "' + b"z" * 3000 + b'"}')
    items = _items(path, max_line_bytes=1000)
    assert [type(i) for i in items] == [Document, BadInput]
    assert items[1].kind == "line_too_long" and items[1].line == 2


def test_last_line_without_newline_is_read(tmp_path: Path) -> None:
    path = tmp_path / "nonl.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"text": "b"}')
    assert [i.text for i in _items(path)] == ["a", "b"]


def test_empty_jsonl_file_is_one_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    (item,) = _items(path)
    assert isinstance(item, BadInput) and item.kind == "empty"


def test_jsonl_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "x"}\n')
    (item,) = _items(path)
    assert isinstance(item, Document) and item.id == "a"


# --- stdin -----------------------------------------------------------------------------------


def test_stdin_jsonl() -> None:
    stream = io.BytesIO(b'{"id": "s1", "text": "from stdin"}\n{"text": "second"}\nnope\n')
    items = list(iter_documents(["-"], stdin=stream))
    assert items[0] == Document("s1", "from stdin", "<stdin>", 0, {}, line=1)
    assert items[1] == Document("<stdin>:2", "second", "<stdin>", 1, {}, line=2)
    assert isinstance(items[2], BadInput)
    assert (items[2].kind, items[2].line, items[2].source) == ("malformed_json", 3, "<stdin>")


# --- text files and folders ------------------------------------------------------------------


def test_single_text_file(tmp_path: Path) -> None:
    path = tmp_path / "contract.txt"
    path.write_text("The Buyer shall pay.\n", encoding="utf-8")
    assert _items(path) == [Document(str(path), "The Buyer shall pay.\n", str(path), 0)]


def test_text_file_with_bom_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "bom.md"
    path.write_bytes(b"\xef\xbb\xbfHeading")
    (doc,) = _items(path)
    assert doc.text == "Heading"


def test_any_other_suffix_given_directly_is_one_document(tmp_path: Path) -> None:
    path = tmp_path / "notes.rst"
    path.write_text("Some notes", encoding="utf-8")
    (doc,) = _items(path)
    assert isinstance(doc, Document) and doc.text == "Some notes"


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("latin1.txt", "Zoë Müller paid €5".encode("latin-1", errors="replace"), "not_utf8"),
        ("latin1b.txt", "café".encode("latin-1"), "not_utf8"),
        ("binary.txt", b"PK\x03\x04\x00\x00\x00binary", "binary"),
        ("empty.txt", b"", "empty"),
        ("blank.md", b"  \n\t\n", "empty"),
    ],
)
def test_bad_text_files(tmp_path: Path, name: str, data: bytes, kind: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    good = tmp_path / "good.txt"
    good.write_text("fine", encoding="utf-8")
    items = _items(path, good)
    assert len(items) == 2
    bad, doc = items
    assert isinstance(bad, BadInput)
    assert (bad.kind, bad.id, bad.source, bad.index, bad.line) == (kind, str(path), str(path), 0, None)
    assert isinstance(doc, Document) and doc.index == 1 and doc.text == "fine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("hidden", encoding="utf-8")
    path.chmod(0)
    try:
        (bad,) = _items(path)
    finally:
        path.chmod(0o644)
    assert isinstance(bad, BadInput) and bad.kind == "unreadable"


def test_broken_symlink_given_directly_is_unreadable(tmp_path: Path) -> None:
    link = tmp_path / "gone.txt"
    os.symlink(tmp_path / "does-not-exist.txt", link)
    good = tmp_path / "ok.txt"
    good.write_text("ok", encoding="utf-8")
    items = _items(link, good)
    assert isinstance(items[0], BadInput)
    assert (items[0].kind, items[0].index) == ("unreadable", 0)
    assert isinstance(items[1], Document) and items[1].index == 1


def test_broken_jsonl_symlink_given_directly_is_unreadable(tmp_path: Path) -> None:
    link = tmp_path / "gone.jsonl"
    os.symlink(tmp_path / "missing.jsonl", link)
    (bad,) = _items(link)
    assert isinstance(bad, BadInput) and bad.kind == "unreadable"


def test_directory_named_like_a_jsonl_file_is_read_as_folder(tmp_path: Path) -> None:
    folder = tmp_path / "looks.jsonl"
    folder.mkdir()
    (folder / "inner.txt").write_text("inside", encoding="utf-8")
    (doc,) = _items(folder)
    assert isinstance(doc, Document) and doc.text == "inside"


def test_folder_recursion_sorted_globs_and_skips(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "b_sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("A", encoding="utf-8")
    (root / "c.md").write_text("C", encoding="utf-8")
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / "data.jsonl").write_text('{"text": "skipped by default globs"}\n', encoding="utf-8")
    (root / "b_sub" / "z.txt").write_text("Z", encoding="utf-8")
    (root / "b_sub" / "deeper" / "y.md").write_text("Y", encoding="utf-8")
    (root / "b_sub" / "notes.TXT").write_text("upper", encoding="utf-8")
    items = _items(root)
    assert items == [
        Document(str(root / "a.txt"), "A", str(root / "a.txt"), 0),
        Document(str(root / "b_sub/deeper/y.md"), "Y", str(root / "b_sub/deeper/y.md"), 1),
        SkippedFile(str(root / "b_sub/notes.TXT")),
        Document(str(root / "b_sub/z.txt"), "Z", str(root / "b_sub/z.txt"), 2),
        Document(str(root / "c.md"), "C", str(root / "c.md"), 3),
        SkippedFile(str(root / "data.jsonl")),
        SkippedFile(str(root / "image.png")),
    ]


def test_folder_with_jsonl_glob_reads_lines(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    _jsonl(root / "a.jsonl", [{"id": "1", "text": "one"}, "[]", {"id": "3", "text": "three"}])
    (root / "b.txt").write_text("bee", encoding="utf-8")
    items = _items(root, globs=("*.jsonl", "*.txt"))
    assert [(type(i).__name__, i.index) for i in items] == [
        ("Document", 0),
        ("BadInput", 1),
        ("Document", 2),
        ("Document", 3),
    ]
    assert items[1].kind == "not_object" and items[1].line == 2
    assert items[3].text == "bee"


def test_folder_bad_files_and_broken_link(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "1_bin.txt").write_bytes(b"abc\x00def")
    (root / "2_latin.txt").write_bytes("naïve".encode("latin-1"))
    os.symlink(root / "nowhere.txt", root / "3_link.txt")
    (root / "4_empty.md").write_bytes(b"")
    (root / "5_good.txt").write_text("good", encoding="utf-8")
    items = _items(root)
    assert [(getattr(i, "kind", "doc"), i.index) for i in items] == [
        ("binary", 0),
        ("not_utf8", 1),
        ("unreadable", 2),
        ("empty", 3),
        ("doc", 4),
    ]


def test_symlink_loop_in_folder(tmp_path: Path) -> None:
    root = tmp_path / "loop"
    sub = root / "sub"
    sub.mkdir(parents=True)
    (sub / "a.txt").write_text("a", encoding="utf-8")
    os.symlink(root, sub / "back")  # sub/back -> root: a loop
    items = _items(root)
    kinds = [(type(i).__name__, getattr(i, "kind", None), getattr(i, "id", None)) for i in items]
    assert kinds == [
        ("Document", None, str(sub / "a.txt")),
        ("BadInput", "symlink_loop", str(sub / "back")),
    ]
    assert items[1].index == 1


def test_self_symlink_loop(tmp_path: Path) -> None:
    root = tmp_path / "self"
    root.mkdir()
    os.symlink(root, root / "me")
    (root / "x.txt").write_text("x", encoding="utf-8")
    items = _items(root)
    assert [getattr(i, "kind", "doc") for i in items] == ["symlink_loop", "doc"]


def test_a_folder_reached_twice_through_a_sibling_link_is_read_once_without_error(tmp_path: Path) -> None:
    """Issue 21: a sibling alias (``docs/current -> docs/2024``) is not a loop. It was a
    ``symlink_loop`` error record, so a nightly run over such a tree exited 1 every night."""
    root = tmp_path / "docs"
    (root / "2024").mkdir(parents=True)
    (root / "2024" / "a.txt").write_text("a", encoding="utf-8")
    (root / "current").symlink_to(root / "2024")  # after 2024 in name order: already read
    (root / "0-latest").symlink_to(root / "2024")  # before it: read here, 2024 itself is then the alias
    items = _items(root)
    assert [(type(i).__name__, i.id) for i in items if not isinstance(i, SkippedFile)] == [
        ("Document", str(root / "0-latest" / "a.txt"))
    ]
    assert count_documents([str(root)]) == 1


def test_missing_input_raises_before_anything(tmp_path: Path) -> None:
    good = tmp_path / "ok.txt"
    good.write_text("ok", encoding="utf-8")
    gen = iter_documents([str(good), str(tmp_path / "nope.jsonl")])
    with pytest.raises(InputError) as info:
        next(gen)
    assert "nope.jsonl" in str(info.value)
    assert for_error(info.value) == 2


def test_index_is_consecutive_across_inputs(tmp_path: Path) -> None:
    a = _jsonl(tmp_path / "a.jsonl", [{"text": "1"}, "bad", {"text": "3"}])
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x.txt").write_text("x", encoding="utf-8")
    (folder / "skip.csv").write_text("c", encoding="utf-8")
    (folder / "y.txt").write_text("y", encoding="utf-8")
    single = tmp_path / "single.md"
    single.write_text("s", encoding="utf-8")
    stdin = io.BytesIO(b'{"text": "in"}\n')
    items = list(iter_documents([str(a), str(folder), "-", str(single)], stdin=stdin))
    numbered = [i for i in items if not isinstance(i, SkippedFile)]
    assert [i.index for i in numbered] == list(range(7))
    assert [getattr(i, "text", None) for i in numbered] == ["1", None, "3", "x", "y", "in", "s"]
    assert sum(isinstance(i, SkippedFile) for i in items) == 1


def test_count_documents(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    a.write_bytes(b'{"text": "1"}\n{"text": "2"}\n{"text": "3"}')  # no final newline
    b = tmp_path / "b.jsonl"
    b.write_bytes(b"")
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "x.txt").write_text("x", encoding="utf-8")
    (folder / "sub" / "y.md").write_text("y", encoding="utf-8")
    (folder / "z.csv").write_text("z", encoding="utf-8")
    single = tmp_path / "s.txt"
    single.write_text("s", encoding="utf-8")
    assert count_documents([str(a)]) == 3
    assert count_documents([str(b)]) == 1  # an empty file is one "empty" bad input
    assert count_documents([str(folder)]) == 2
    assert count_documents([str(a), str(folder), str(single)]) == 6
    assert count_documents([str(a), "-"]) is None


def test_count_documents_walks_a_folder_as_the_reader_does(tmp_path: Path) -> None:
    root = tmp_path / "in"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.txt").write_text("a", encoding="utf-8")
    (root / "real" / "notes.csv").write_text("skipped", encoding="utf-8")
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.txt").write_text("b", encoding="utf-8")
    (other / "c.jsonl").write_text('{"text": "c1"}\n{"text": "c2"}\n', encoding="utf-8")
    (root / "linked").symlink_to(other)  # a symlinked folder: read, so counted
    (root / "real" / "up").symlink_to(root)  # a link back: one bad input
    items = [i for i in _items(root, globs=("*.txt", "*.jsonl")) if not isinstance(i, SkippedFile)]
    assert count_documents([str(root)], globs=("*.txt", "*.jsonl")) == len(items) == 5


# --- property: any mix of good and junk lines ------------------------------------------------

_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(10**9), 10**9), st.text(max_size=10))
_keys = st.text(min_size=1, max_size=8).filter(lambda k: k != "text")


def _not_blank(raw: bytes) -> bool:
    return bool(raw.strip()) and bool(raw.decode("utf-8", "replace").strip())


# The documented rule (README, `empty_text`): a text of only whitespace and invisible characters
# (zero-width space and joiners, word joiner, BOM, soft hyphen) is empty. Written out here, not
# imported, so the test checks the reader against the rule.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad"


def _has_text(text: str) -> bool:
    return bool("".join(c for c in text if c not in _INVISIBLE).strip())


def _is_good(raw: bytes) -> bool:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(obj, dict) and isinstance(obj.get("text"), str) and _has_text(obj["text"])


_good = st.builds(
    lambda text, extra: ("good", json.dumps({"text": text, **extra}, ensure_ascii=False).encode(), text),
    st.text(min_size=1, max_size=40).filter(_has_text),
    st.dictionaries(_keys, _json_scalar, max_size=3),
)
_junk_bytes = st.one_of(
    st.text(min_size=1, max_size=40).map(lambda t: t.encode("utf-8")),
    st.binary(min_size=1, max_size=40),
    st.lists(_json_scalar, max_size=4).map(lambda v: json.dumps(v).encode()),
    st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)).map(lambda v: json.dumps(v).encode()),
    st.dictionaries(_keys, _json_scalar, max_size=3).map(lambda d: json.dumps(d).encode()),
    st.sampled_from([b'{"text": 3}', b'{"text": ""}', b'{"text": " "}', b'{"text": [1]}', b'{"text": "a"']),
)
_junk = (
    _junk_bytes.map(lambda b: b.replace(b"\n", b" "))
    .filter(lambda b: _not_blank(b) and not _is_good(b))
    .map(lambda b: ("junk", b, None))
)
_blank = st.sampled_from([b"", b"   ", b"\t"]).map(lambda b: ("blank", b, None))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(_good, _junk, _blank), min_size=1, max_size=25))
# A soft hyphen alone is no text (the reader's rule); the test's model once said it was.
@example(lines=[("junk", '{"text": "\u00ad"}'.encode(), None), ("good", b'{"text": "a\\u00ad"}', "a\u00ad")])
def test_property_jsonl_good_and_junk_lines(tmp_path: Path, lines: list[tuple[str, bytes, str | None]]) -> None:
    path = tmp_path / "prop.jsonl"
    path.write_bytes(b"".join(raw + b"\n" for _, raw, _ in lines))
    first = lines[0][1].removeprefix(b"\xef\xbb\xbf")  # a byte-order mark opening the file is not content
    if first != lines[0][1]:
        if not first.strip():
            lines[0] = ("blank", first, None)
        elif _is_good(first):
            lines[0] = ("good", first, json.loads(first)["text"])
        else:
            lines[0] = ("junk", first, None)
    items = list(iter_documents([str(path)]))
    expected = [(kind, n, text) for n, (kind, _, text) in enumerate(lines, start=1) if kind != "blank"]
    if not expected:  # only blank lines: the file is one "empty" bad input
        assert [(type(i), i.kind, i.line) for i in items] == [(BadInput, "empty", None)]
        return
    assert len(items) == len(expected)
    for index, (item, (kind, line_no, text)) in enumerate(zip(items, expected, strict=True)):
        assert item.index == index
        assert item.line == line_no
        if kind == "good":
            assert isinstance(item, Document)
            assert item.text == text
        else:
            assert isinstance(item, BadInput)
            assert item.kind in {
                "malformed_json",
                "not_object",
                "missing_text",
                "empty_text",
                "text_not_string",
                "not_utf8",
            }


# --- input safety (issue #13) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbf",  # only a byte-order mark
        b"\xef\xbb\xbf \r\n\t",
        "\u00a0\u00a0\n".encode(),  # NBSP
        "\u3000 \u3000".encode(),  # ideographic space
        "\u200b\ufeff\u2060".encode(),  # invisible characters only
    ],
)
def test_file_with_only_a_bom_or_whitespace_is_empty(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "blank.txt"
    path.write_bytes(data)
    (bad,) = _items(path)
    assert isinstance(bad, BadInput) and bad.kind == "empty"


@pytest.mark.parametrize("name", ["zero.pdf", "zero.docx", "zero.html"])
def test_a_zero_byte_file_of_any_format_is_empty(tmp_path: Path, name: str) -> None:
    (tmp_path / name).touch()
    (bad,) = _items(tmp_path / name)
    assert isinstance(bad, BadInput) and bad.kind == "empty", bad  # not corrupt / not_a_zip


def test_jsonl_text_of_only_unicode_spaces_is_empty_text(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "s.jsonl", [{"id": "a", "text": "\u3000\u00a0\u200b"}])
    (bad,) = _items(path)
    assert isinstance(bad, BadInput) and bad.kind == "empty_text"


def test_nul_byte_after_the_first_8k_is_binary(tmp_path: Path) -> None:
    path = tmp_path / "late-nul.txt"
    path.write_bytes(b"a" * 100_000 + b"\x00" + b"b" * 10)
    (bad,) = _items(path)
    assert isinstance(bad, BadInput) and bad.kind == "binary" and "offset 100000" in bad.message


def test_utf16_text_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "utf16.txt"
    path.write_bytes("Ingrid Halvorsen".encode("utf-16"))
    (bad,) = _items(path)
    assert isinstance(bad, BadInput) and bad.kind == "not_utf8" and "UTF-16" in bad.message


def test_jsonl_whose_first_line_is_only_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom-line.jsonl"
    path.write_bytes(b'\xef\xbb\xbf\n\n{"id": "a", "text": "one"}\n{"id": "b", "text": "two"}\n')
    items = _items(path)
    assert [(type(i), i.id, i.line, i.index) for i in items] == [(Document, "a", 3, 0), (Document, "b", 4, 1)]


def test_jsonl_of_only_a_bom_and_blank_lines_is_one_empty_input(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b"\xef\xbb\xbf\n  \n\n")
    (bad,) = _items(path)
    assert isinstance(bad, BadInput) and bad.kind == "empty" and "blank lines" in bad.message


def _in_thread(function, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Run ``function`` in a daemon thread; fail (instead of hanging) if it does not return."""
    import threading

    result: list = []
    thread = threading.Thread(target=lambda: result.append(function()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "blocked: a FIFO was opened"
    return result[0]


def test_fifo_and_socket_in_a_folder_are_not_files_and_never_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    root = tmp_path / "in"
    root.mkdir()
    (root / "a.txt").write_text("first", encoding="utf-8")
    os.mkfifo(root / "b.txt")
    os.mkfifo(root / "c.jsonl")
    server = socket.socket(socket.AF_UNIX)
    try:
        monkeypatch.chdir(root)
        server.bind("d.md")  # relative: socket paths are limited to about 100 bytes
        (root / "e.txt").write_text("last", encoding="utf-8")
        items = _in_thread(lambda: _items(root, globs=("*.txt", "*.md", "*.jsonl")))
        count = _in_thread(lambda: count_documents([str(root)], globs=("*.txt", "*.md", "*.jsonl")))
    finally:
        server.close()
    assert [(getattr(i, "kind", "doc"), i.index) for i in items] == [
        ("doc", 0),
        ("not_a_file", 1),
        ("not_a_file", 2),
        ("not_a_file", 3),
        ("doc", 4),
    ]
    assert "FIFO" in items[1].message and "socket" in items[3].message
    assert count == 5


def test_fifo_named_directly_is_read_as_a_pipe_and_not_counted(tmp_path: Path) -> None:
    import threading

    fifo = tmp_path / "piped.txt"
    os.mkfifo(fifo)
    assert count_documents([str(fifo)]) is None  # counting would consume the pipe

    def write() -> None:
        with open(fifo, "wb") as stream:
            stream.write(b"streamed text")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    (doc,) = _in_thread(lambda: _items(fifo))
    writer.join(5)
    assert isinstance(doc, Document) and doc.text == "streamed text"


def test_file_names_that_are_not_utf8_are_escaped(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path / "in")
    os.mkdir(root)
    with open(os.path.join(root, b"memo_\xff.txt"), "wb") as stream:
        stream.write(b"odd name")
    with open(os.path.join(root, b"note.txt"), "wb") as stream:
        stream.write(b"good")
    with open(os.path.join(root, b"skip_\xfe.csv"), "wb") as stream:
        stream.write(b"x")
    with open(os.path.join(root, b"zz_\xfd.txt"), "wb") as stream:
        stream.write(b"\x00binary")
    folder = str(tmp_path / "in")
    items = _items(folder)
    assert items == [
        Document(folder + "/memo_\\xff.txt", "odd name", folder + "/memo_\\xff.txt", 0),
        Document(folder + "/note.txt", "good", folder + "/note.txt", 1),
        SkippedFile(folder + "/skip_\\xfe.csv"),
        BadInput(folder + "/zz_\\xfd.txt", folder + "/zz_\\xfd.txt", 2, "binary", items[3].message),
    ]
    for item in items:
        for value in vars(item).values() if hasattr(item, "__dict__") else [getattr(item, f) for f in item.__slots__]:
            if isinstance(value, str):
                value.encode("utf-8")  # never a lone surrogate
    import orjson

    orjson.dumps([getattr(i, "id", None) for i in items])
    assert _items(os.fsdecode(os.path.join(root, b"memo_\xff.txt")))[0].id == folder + "/memo_\\xff.txt"


# --- converted formats through the dispatcher ------------------------------------------------


def test_default_globs_match_the_configuration_default() -> None:
    from vllm_extract.config import ExtractionConfig
    from vllm_extract.readers import DEFAULT_GLOBS

    assert ExtractionConfig().globs == DEFAULT_GLOBS
    assert {"*.pdf", "*.docx", "*.html", "*.htm", "*.txt", "*.md"} == set(DEFAULT_GLOBS)


def test_folder_reads_every_format_in_order(tmp_path: Path) -> None:
    pytest.importorskip("pypdfium2")
    pytest.importorskip("selectolax")
    fpdf = pytest.importorskip("fpdf")
    docx = pytest.importorskip("docx")
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "a.txt").write_text("Plain text.", encoding="utf-8")
    pdf = fpdf.FPDF()
    pdf.set_font("Helvetica", size=11)
    pdf.add_page()
    pdf.text(20, 30, "From a PDF.")
    pdf.output(str(root / "b.pdf"))
    document = docx.Document()
    document.add_paragraph("From a DOCX.")
    document.save(str(root / "c.docx"))
    (root / "d.html").write_text("<nav>menu</nav><p>From HTML.</p>", encoding="utf-8")
    (root / "e.HTM").write_text("<p>Upper-case suffix.</p>", encoding="utf-8")
    (root / "f.png").write_bytes(b"\x89PNG")
    items = _items(root)
    assert [(type(i).__name__, getattr(i, "text", None), getattr(i, "converted", None)) for i in items] == [
        ("Document", "Plain text.", False),
        ("Document", "From a PDF.", True),
        ("Document", "From a DOCX.", True),
        ("Document", "From HTML.", True),
        ("SkippedFile", None, None),  # globs are case-sensitive, as before
        ("SkippedFile", None, None),
    ]
    assert items[0].pages is None and items[1].pages == ((0, 11),)
    assert count_documents([str(root)]) == 4
    assert [i.text for i in _items(root / "e.HTM")] == ["Upper-case suffix."]  # named directly: by suffix, any case


def test_a_reader_that_crashes_gives_a_corrupt_input_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vllm_extract.readers import documents

    def explode(origin, st):  # type: ignore[no-untyped-def]
        raise ValueError("library bug")

    monkeypatch.setitem(documents.CONVERTED_SUFFIXES, ".pdf", explode)
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "b.txt").write_text("next", encoding="utf-8")
    bad, good = _items(tmp_path)
    assert isinstance(bad, BadInput) and bad.kind == "corrupt" and "ValueError: library bug" in bad.message
    assert isinstance(good, Document) and good.index == 1


def test_converted_file_that_is_not_regular_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    (bad,) = _in_thread(lambda: _items(fifo))
    assert isinstance(bad, BadInput) and bad.kind == "not_a_file"
