"""The one JSONL line reader and its rule for a torn last line."""

from __future__ import annotations

import io

import pytest

from vllm_extract.exceptions import InputError
from vllm_extract.output.jsonl import BOM, JsonlLine, iter_objects, read_lines


def lines(data: bytes) -> list[JsonlLine]:
    return list(read_lines(io.BytesIO(data)))


def test_lines_carry_number_offset_and_bytes() -> None:
    data = b'{"a": 1}\n\n{"b": 2}\n'
    assert lines(data) == [
        JsonlLine(1, 0, b'{"a": 1}\n', False),
        JsonlLine(2, 9, b"\n", False),
        JsonlLine(3, 10, b'{"b": 2}\n', False),
    ]
    assert [data[line.offset : line.end] for line in lines(data)] == [line.data for line in lines(data)]


def test_an_unterminated_last_line_is_torn_even_when_it_parses() -> None:
    assert lines(b'{"a": 1}\n{"b": 2}')[-1] == JsonlLine(2, 9, b'{"b": 2}', True)
    assert [n for n, _ in iter_objects(io.BytesIO(b'{"a": 1}\n{"b": 2}'), "f", hint="")] == [1]
    assert [n for n, _ in iter_objects(io.BytesIO(b'{"a": 1}\n{"b": 2}'), "f", hint="", keep_torn=True)] == [1, 2]


def test_a_byte_order_mark_is_not_part_of_line_one() -> None:
    data = BOM + b'{"a": 1}\n{"b": 2}\n'
    first, second = lines(data)
    assert first == JsonlLine(1, 3, b'{"a": 1}\n', False) and second.offset == 12
    assert data[first.offset : first.end] == first.data
    assert lines(BOM) == [] and lines(b"") == []
    assert list(iter_objects(io.BytesIO(data), "f", hint="")) == [(1, {"a": 1}), (2, {"b": 2})]


def test_bad_lines_are_named() -> None:
    with pytest.raises(InputError, match=r"^f.jsonl:2: not valid JSON") as info:
        list(iter_objects(io.BytesIO(b'{"a": 1}\n{"b": \n'), "f.jsonl", hint="one object per line"))
    assert info.value.hint == "one object per line"
    with pytest.raises(InputError, match=r"^f.jsonl:1: expected a JSON object, got list"):
        list(iter_objects(io.BytesIO(b"[1]\n"), "f.jsonl", hint=""))
    # A torn line is never parsed, so a cut write is not an error.
    assert list(iter_objects(io.BytesIO(b'{"a": 1}\n{"b": '), "f.jsonl", hint="")) == [(1, {"a": 1})]
