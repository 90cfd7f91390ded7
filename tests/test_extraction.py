"""The extraction task: schema, response parsing, grounding to document offsets, merging."""

from __future__ import annotations

import json

import pytest

from vllm_extract.config import EntityType, ExtractionConfig
from vllm_extract.extract.alignment import Entity, ground_entities, merge_entities
from vllm_extract.extract.chunking import Chunk
from vllm_extract.extract.parsing import RawEntity, parse_response
from vllm_extract.extract.prompts import build_instructions, build_messages, build_schema

ALLOWED = ("PERSON", "ORGANIZATION", "MONEY")


def _chunk(document: str, start: int = 0, end: int | None = None) -> Chunk:
    end = len(document) if end is None else end
    return Chunk("doc", 0, start, end, document[start:end], 0)


# --- schema and prompts ----------------------------------------------------------------------


def test_build_schema_bounds() -> None:
    config = ExtractionConfig(
        entity_types=(EntityType("PERSON", "a person"), EntityType("MONEY")),
        max_entities_per_chunk=17,
        max_entity_chars=55,
    )
    schema = build_schema(config)
    entities = schema["properties"]["entities"]
    assert schema["required"] == ["entities"]
    assert schema["additionalProperties"] is False
    assert entities["type"] == "array"
    assert entities["maxItems"] == 17
    item = entities["items"]
    assert item["properties"]["type"] == {"type": "string", "enum": ["PERSON", "MONEY"]}
    assert item["properties"]["text"] == {"type": "string", "minLength": 1, "maxLength": 55}
    assert item["required"] == ["type", "text"]
    assert item["additionalProperties"] is False
    json.dumps(schema)  # serialisable as is


def test_instructions_and_messages() -> None:
    types = (EntityType("PERSON", "A named individual."), EntityType("MONEY"))
    text = build_instructions(types)
    assert "- PERSON: A named individual." in text
    assert text.endswith("- MONEY")
    messages = build_messages(text, "Chunk body")
    assert messages == [
        {"role": "system", "content": text},
        {"role": "user", "content": "Document:\nChunk body"},
    ]


# --- parse_response --------------------------------------------------------------------------


def test_parse_valid_json() -> None:
    content = json.dumps({"entities": [{"type": "PERSON", "text": "Ada Lovelace"}, {"type": "MONEY", "text": "$5"}]})
    entities, note = parse_response(content, ALLOWED)
    assert entities == [RawEntity("PERSON", "Ada Lovelace"), RawEntity("MONEY", "$5")]
    assert note is None


def test_parse_empty_list() -> None:
    assert parse_response('{"entities": []}', ALLOWED) == ([], None)


def test_parse_filters_wrong_types_and_unknown_labels() -> None:
    content = json.dumps(
        {
            "entities": [
                {"type": "PERSON", "text": "Kept"},
                {"type": "PERSON", "text": 5},
                {"type": 3, "text": "bad type"},
                {"type": "ALIEN", "text": "Unknown label"},
                {"type": "person", "text": "lower-case label"},
                {"type": "MONEY", "text": "   "},
                {"type": "MONEY"},
                "a string",
                ["a", "list"],
                None,
                {"type": "ORGANIZATION", "text": "Acme", "extra": 1},
            ]
        }
    )
    entities, note = parse_response(content, ALLOWED)
    assert entities == [RawEntity("PERSON", "Kept"), RawEntity("ORGANIZATION", "Acme")]
    assert note is None


@pytest.mark.parametrize(
    "content",
    ['{"entities": {"type": "PERSON"}}', '{"other": []}', "[1, 2]", '"text"', "42", "null"],
)
def test_parse_valid_json_without_entity_list(content: str) -> None:
    entities, note = parse_response(content, ALLOWED)
    assert entities == []
    assert note == "response had no entities list"


@pytest.mark.parametrize("content", ["", "garbage", "I cannot help with that.", "<html>", "}{"])
def test_parse_garbage(content: str) -> None:
    entities, note = parse_response(content, ALLOWED)
    assert entities == []
    assert note is not None


FULL = '{"entities": [{"type": "PERSON", "text": "Ada Lovelace"}, {"type": "MONEY", "text": "$5, or 6"}, '


@pytest.mark.parametrize(
    ("content", "kept"),
    [
        # Cut inside the third entity's text: the two complete ones survive.
        (FULL + '{"type": "PERSON", "text": "Charles Bab', 2),
        # Cut inside a key, or right after an opening brace / a key / a colon.
        (FULL + '{"type": "PERSON", "te', 2),
        (FULL + "{", 2),
        (FULL + '{"type": "PERSON", "text"', 2),
        (FULL + '{"type": "PERSON", "text": ', 2),
        # Cut just after a complete entity, with or without its comma.
        (FULL.rstrip(", "), 2),
        (FULL, 2),
        (FULL.rstrip(" "), 2),
        # Cut inside a text that contains a comma or a closing brace: never half an entity.
        ('{"entities": [{"type": "MONEY", "text": "$5,', 0),
        ('{"entities": [{"type": "PERSON", "text": "Ada Lovelace"}, {"type": "PERSON", "text": "Jo}', 1),
        ('{"entities": [{"type": "PERSON", "text": "Ada Lovelace"}, {"type": "PERSON", "text": "Jo]', 1),
        ('{"entities": [{"type": "PERSON", "text": "Ada Lovelace"}, {"type": "PERSON", "text": "A\\"', 1),
        # Cut before any entity.
        ('{"entities": [', 0),
        ('{"entit', 0),
    ],
)
def test_parse_truncated_keeps_complete_entities(content: str, kept: int) -> None:
    entities, note = parse_response(content, ALLOWED)
    expected = [RawEntity("PERSON", "Ada Lovelace"), RawEntity("MONEY", "$5, or 6")]
    if content.startswith('{"entities": [{"type": "PERSON", "text": "Ada'):
        assert entities == expected[:kept]
    else:
        assert entities == []
    assert note is not None


def test_parse_truncated_note_text() -> None:
    entities, note = parse_response('{"entities": [{"type": "PERSON", "text": "Ada"}, {"ty', ALLOWED)
    assert entities == [RawEntity("PERSON", "Ada")]
    assert note == "response JSON was incomplete; complete entities were kept"


# --- grounding -------------------------------------------------------------------------------


def test_ground_exact_with_chunk_offset() -> None:
    document = "Preamble. The buyer, Acme Corp, pays Jane Doe $500 on delivery."
    start = document.index("The buyer")
    chunk = _chunk(document, start)
    entities, ungrounded = ground_entities(
        [RawEntity("ORGANIZATION", "Acme Corp"), RawEntity("PERSON", "Jane Doe"), RawEntity("MONEY", "$500")],
        chunk,
    )
    assert ungrounded == 0
    assert entities == [
        Entity("ORGANIZATION", "Acme Corp", 21, 30),
        Entity("PERSON", "Jane Doe", 37, 45),
        Entity("MONEY", "$500", 46, 50),
    ]
    for ent in entities:
        assert document[ent.start : ent.end] == ent.text


def test_ground_case_insensitive() -> None:
    document = "xx ACME CORPORATION agreed."
    chunk = _chunk(document, 3)
    (ent,), ungrounded = ground_entities([RawEntity("ORGANIZATION", "Acme Corporation")], chunk)
    assert ungrounded == 0
    assert (ent.start, ent.end, ent.text) == (3, 19, "ACME CORPORATION")
    assert document[ent.start : ent.end] == ent.text


def test_ground_whitespace_insensitive() -> None:
    document = "Signed by Jane\n   Q.  Doe\tof London."
    chunk = _chunk(document)
    (ent,), ungrounded = ground_entities([RawEntity("PERSON", " jane q. doe ")], chunk)
    assert ungrounded == 0
    assert ent.text == "Jane\n   Q.  Doe"
    assert document[ent.start : ent.end] == ent.text
    assert ent.start == document.index("Jane")


def test_ground_regex_characters_are_literal() -> None:
    document = "Fees: $1.5 (one point five) million [approx.] + VAT*"
    chunk = _chunk(document)
    raw = [RawEntity("MONEY", "$1.5  (ONE point five)"), RawEntity("MONEY", "[approx.] + vat*")]
    entities, ungrounded = ground_entities(raw, chunk)
    assert ungrounded == 0
    assert [e.text for e in entities] == ["$1.5 (one point five)", "[approx.] + VAT*"]
    assert all(document[e.start : e.end] == e.text for e in entities)
    # "$1X5" must not match "$1.5" through a regex dot.
    assert ground_entities([RawEntity("MONEY", "$1X5")], chunk) == ([], 1)


def test_ground_not_found_dropped_or_kept() -> None:
    chunk = _chunk("Only Alice is here.")
    raw = [RawEntity("PERSON", "Bob"), RawEntity("PERSON", "Alice"), RawEntity("PERSON", "Carol")]
    entities, ungrounded = ground_entities(raw, chunk)
    assert ungrounded == 2
    assert entities == [Entity("PERSON", "Alice", 5, 10)]
    kept, ungrounded = ground_entities(raw, chunk, keep_ungrounded=True)
    assert ungrounded == 2
    assert kept == [
        Entity("PERSON", "Bob", -1, -1, grounded=False),
        Entity("PERSON", "Alice", 5, 10),
        Entity("PERSON", "Carol", -1, -1, grounded=False),
    ]
    assert kept[0].to_dict() == {"type": "PERSON", "text": "Bob", "start": -1, "end": -1, "grounded": False}
    assert kept[1].to_dict() == {"type": "PERSON", "text": "Alice", "start": 5, "end": 10}


def test_ground_repeated_mentions_map_to_successive_occurrences() -> None:
    document = "Acme sued Beta. Then Acme paid. Finally acme left."
    chunk = _chunk(document)
    raw = [RawEntity("ORGANIZATION", "Acme")] * 3
    entities, ungrounded = ground_entities(raw, chunk)
    assert ungrounded == 0
    starts = [e.start for e in entities]
    assert starts == [0, document.index("Then Acme") + 5, document.index("acme left")]
    assert [e.text for e in entities] == ["Acme", "Acme", "acme"]
    # A fourth mention wraps around to the first occurrence (and merging removes the repeat).
    entities, _ = ground_entities(raw * 2, chunk)
    assert [e.start for e in entities[3:]] == starts
    assert [e.start for e in merge_entities([entities])] == starts


def test_ground_unicode_offsets_are_code_points() -> None:
    prefix = "Zeuge 😀👩‍⚖️ 東京地方裁判所。 Ünïcödé: "
    document = prefix + "José Müller-Łukasiewicz and 東京地方裁判所 paid €5.000 🎉."
    chunk_start = 4
    chunk = _chunk(document, chunk_start)
    raw = [
        RawEntity("PERSON", "José Müller-Łukasiewicz"),
        RawEntity("ORGANIZATION", "東京地方裁判所"),
        RawEntity("MONEY", "€5.000"),
        RawEntity("PERSON", "JOSÉ MÜLLER-ŁUKASIEWICZ"),
    ]
    entities, ungrounded = ground_entities(raw, chunk)
    assert ungrounded == 0
    for ent, want in zip(entities, raw, strict=True):
        assert document[ent.start : ent.end] == ent.text
        assert ent.text.lower() == want.text.lower()
    assert entities[0].start == len(prefix)
    assert entities[0].end == len(prefix) + len("José Müller-Łukasiewicz")
    # The CJK name occurs twice; the first occurrence inside the chunk comes first.
    assert entities[1].start == document.index("東京地方裁判所")
    assert entities[3].start == entities[0].start


# --- merge -----------------------------------------------------------------------------------


def test_merge_dedupes_overlap_and_sorts() -> None:
    chunk1 = [Entity("PERSON", "Ann", 50, 53), Entity("ORGANIZATION", "Acme", 10, 14)]
    chunk2 = [
        Entity("PERSON", "Ann", 50, 53),
        Entity("MONEY", "$5", 80, 82),
        Entity("LOCATION", "Ann", 50, 53),
        Entity("PERSON", "Zed", -1, -1, grounded=False),
    ]
    chunk3 = [
        Entity("PERSON", "Zed", -1, -1, grounded=False),
        Entity("PERSON", "Bob", -1, -1, grounded=False),
    ]
    merged = merge_entities([chunk1, chunk2, chunk3])
    assert merged == [
        Entity("ORGANIZATION", "Acme", 10, 14),
        Entity("LOCATION", "Ann", 50, 53),
        Entity("PERSON", "Ann", 50, 53),
        Entity("MONEY", "$5", 80, 82),
        Entity("PERSON", "Bob", -1, -1, grounded=False),
        Entity("PERSON", "Zed", -1, -1, grounded=False),
    ]


def test_merge_end_to_end_overlapping_chunks() -> None:
    document = "Alice met Bob in Paris. Bob paid Alice. Carol watched in Rome."
    a = _chunk(document, 0, 40)
    b = Chunk("doc", 1, 24, len(document), document[24:], 0)
    ents_a, _ = ground_entities([RawEntity("PERSON", "Alice"), RawEntity("PERSON", "Bob")] * 2, a)
    ents_b, _ = ground_entities([RawEntity("PERSON", "Bob"), RawEntity("PERSON", "Alice")], b)
    merged = merge_entities([ents_a, ents_b])
    assert [(e.text, e.start) for e in merged] == [("Alice", 0), ("Bob", 10), ("Bob", 24), ("Alice", 33)]
    assert all(document[e.start : e.end] == e.text for e in merged)
