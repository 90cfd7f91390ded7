"""Worked examples from gold (``run.examples``, ``--examples``): which windows are chosen, and why."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from vllm_extract.exceptions import ConfigurationError
from vllm_extract.run.examples import choose_examples, load_examples

GOLD = Path(__file__).resolve().parent.parent / "examples" / "gold" / "gold.jsonl"


def spans(text: str, *pairs: tuple[str, str]) -> list[tuple[str, int, int]]:
    return [(t, text.index(x), text.index(x) + len(x)) for t, x in pairs]


def test_examples_cover_the_most_types_then_the_most_entities_then_the_shortest() -> None:
    a = "Ann Lee sued Acme Corp on May 2."
    b = "Bo Chan met Di Wu."
    c = "Zed Inc paid Ann Lee $5 on June 1."
    docs = [
        ("a", a, spans(a, ("PERSON", "Ann Lee"), ("ORGANIZATION", "Acme Corp"), ("DATE", "May 2"))),
        ("b", b, spans(b, ("PERSON", "Bo Chan"), ("PERSON", "Di Wu"))),
        ("c", c, spans(c, ("ORGANIZATION", "Zed Inc"), ("PERSON", "Ann Lee"), ("MONEY", "$5"), ("DATE", "June 1"))),
    ]
    chosen = choose_examples(docs, ["PERSON", "ORGANIZATION", "DATE", "MONEY"], 3)
    assert [e.source_id for e in chosen] == ["c"]  # c shows all four types; nothing else adds one
    assert chosen[0].example.entities == (
        ("ORGANIZATION", "Zed Inc"),
        ("PERSON", "Ann Lee"),
        ("MONEY", "$5"),
        ("DATE", "June 1"),
    )
    only_people = choose_examples(docs, ["PERSON"], 2)
    assert [e.source_id for e in only_people] == ["b"]  # two distinct people beat one
    assert (
        only_people[0].example.answer()
        == '{"entities":[{"type":"PERSON","text":"Bo Chan"},{"type":"PERSON","text":"Di Wu"}]}'
    )
    assert choose_examples(docs, ["COURT"], 2) == [] and choose_examples(docs, ["PERSON"], 0) == []


def test_a_long_document_gives_windows_that_cut_no_entity() -> None:
    paragraph = "Ann Lee of Acme Corp signed. " * 10
    text = paragraph + "\n\n" + "Bo Chan of Zed Inc agreed on May 2. " * 30
    entities = [("PERSON", i, i + 7) for i in range(len(text)) if text.startswith(("Ann Lee", "Bo Chan"), i)]
    entities += [("DATE", i, i + 5) for i in range(len(text)) if text.startswith("May 2", i)]
    chosen = choose_examples([("d", text, entities)], ["PERSON", "DATE"], 2, max_chars=200)
    assert chosen, "a window with a PERSON and a DATE exists"
    for example in chosen:
        assert example.end - example.start <= 200
        assert text[example.start : example.end].strip() == example.example.text
        for start, end in ((s, e) for _, s, e in entities):
            inside = example.start <= start and end <= example.end
            outside = end <= example.start or start >= example.end
            assert inside or outside  # no entity is cut
    assert {t for e in chosen for t, _ in e.example.entities} == {"PERSON", "DATE"}


def test_load_examples_reads_gold_and_says_what_is_wrong(tmp_path: Path) -> None:
    chosen = load_examples(str(GOLD), ["PERSON", "COURT", "DATE"], 2)
    assert 1 <= len(chosen) <= 2
    for example in chosen:
        assert len(example.example.text) <= 600 and example.example.entities
    assert load_examples(str(GOLD), ["PERSON"], 2) == load_examples(str(GOLD), ["PERSON"], 2)  # deterministic
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    with pytest.raises(ConfigurationError, match="--examples"):
        load_examples(str(bad), ["PERSON"], 2)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(orjson.dumps({"id": "x", "text": "Ann", "entities": [{"type": "PERSON", "start": 0, "end": 3}]}))
    with pytest.raises(ConfigurationError, match="no document has text and an entity"):
        load_examples(str(empty), ["COURT"], 2)
