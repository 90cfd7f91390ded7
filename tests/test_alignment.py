"""Reading the model's answer and aligning it to the document (issue #12, "Alignment", "Every mention").

Offsets are Python code points. Each case the issue lists is a test here with its exact values;
the property test at the end checks the rules on random documents and random model outputs.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Sequence

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vllm_extract.extract.alignment import (
    MENTION_MODES,
    Alignment,
    align_document,
    expand_mentions,
    merge_entities,
)
from vllm_extract.extract.chunking import Chunk, chunk_document
from vllm_extract.extract.grounding import Entity, ground_entities
from vllm_extract.extract.parsing import RawEntity, parse_response

ALLOWED = ("PERSON", "ORGANIZATION", "MONEY")


def _chunk(document: str, start: int = 0, end: int | None = None, index: int = 0) -> Chunk:
    end = len(document) if end is None else end
    return Chunk("doc", index, start, end, document[start:end], 0)


def _spans(entities: Sequence[Entity]) -> list[tuple[str, str, int, int]]:
    return [(e.type, e.text, e.start, e.end) for e in entities]


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
    parsed = parse_response(content, ALLOWED)
    assert parsed.entities == [] and parsed.unparsable  # an error record, not "nothing found"
    assert parsed.note == "response had no entities list"


@pytest.mark.parametrize("content", ["", "garbage", "I cannot help with that.", "<html>", "}{", "```json\n```"])
def test_parse_garbage(content: str) -> None:
    parsed = parse_response(content, ALLOWED)
    assert parsed.entities == [] and parsed.unparsable
    assert parsed.note is not None


def test_an_empty_list_or_a_begun_list_is_an_answer_and_anything_else_is_not() -> None:
    assert not parse_response('{"entities": []}', ALLOWED).unparsable  # nothing found
    assert not parse_response('{"entities": [', ALLOWED).unparsable  # cut: the list began
    assert not parse_response('{"entities": [{"type": "PERSON", "text": "Ada"}, {"ty', ALLOWED).unparsable
    for cut in ('{"entit', "{", "Sure! Here they are: {", '{"thinking": "the people are'):
        parsed = parse_response(cut, ALLOWED)
        assert parsed.unparsable and parsed.note == "response JSON was incomplete and had no entities list"
    assert parse_response("I cannot help.", ALLOWED).note == "response is not JSON and holds no entities list"


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


BODY = '{"entities": [{"type": "PERSON", "text": "Ada"}, {"type": "MONEY", "text": "$5 {x}"}]}'
WANT = [RawEntity("PERSON", "Ada"), RawEntity("MONEY", "$5 {x}")]


@pytest.mark.parametrize(
    "content",
    [
        f"```json\n{BODY}\n```",
        f"```\n{BODY}\n```",
        f"```JSON\r\n{BODY}\r\n```\n",
        f"  ```json\n{BODY}```",
        f"{BODY}\n\nThese are all the entities I found.",
        f"{BODY} {{trailing brace",
        f"Here is the JSON:\n```json\n{BODY}\n```\nLet me know if you need more.",
        f'Sure! Example: {{"note": 1}} and the answer: {BODY} -- done',
        f'```json\n{BODY}\n```\n```json\n{{"entities": []}}\n```',
    ],
)
def test_parse_fenced_or_surrounded_json(content: str) -> None:
    assert parse_response(content, ALLOWED) == (WANT, None)


def test_parse_fenced_and_truncated_keeps_complete_entities() -> None:
    content = '```json\n{"entities": [{"type": "PERSON", "text": "Ada"}, {"type": "MONEY", "text": "$5'
    entities, note = parse_response(content, ALLOWED)
    assert entities == [RawEntity("PERSON", "Ada")]
    assert note == "response JSON was incomplete; complete entities were kept"
    prose = 'Sure, here you go: {"entities": [{"type": "PERSON", "text": "Ada"}, {"type"'
    assert parse_response(prose, ALLOWED) == ([RawEntity("PERSON", "Ada")], note)


# --- grounding: the issue's cases --------------------------------------------------------------


def test_issue_longer_name_first_and_repeats_take_later_occurrences() -> None:
    document = "Acme Corp sued Acme. Acme lost."
    raw = [RawEntity("ORGANIZATION", t) for t in ("Acme Corp", "Acme", "Acme")]
    entities, ungrounded = ground_entities(raw, _chunk(document))
    assert ungrounded == 0
    assert _spans(entities) == [
        ("ORGANIZATION", "Acme Corp", 0, 9),
        ("ORGANIZATION", "Acme", 15, 19),
        ("ORGANIZATION", "Acme", 21, 25),
    ]


def test_issue_longer_name_first_whatever_the_listing_order() -> None:
    document = "Acme Corp sued Acme. Acme lost."
    raw = [RawEntity("ORGANIZATION", t) for t in ("Acme", "Acme", "Acme Corp")]
    entities, _ = ground_entities(raw, _chunk(document))
    # Returned in the model's order; placed longer first.
    assert _spans(entities) == [
        ("ORGANIZATION", "Acme", 15, 19),
        ("ORGANIZATION", "Acme", 21, 25),
        ("ORGANIZATION", "Acme Corp", 0, 9),
    ]


def test_issue_never_inside_a_word() -> None:
    document = "Smithson met Smith. Smith left."
    entities, ungrounded = ground_entities([RawEntity("PERSON", "Smith")] * 2, _chunk(document))
    assert ungrounded == 0
    assert _spans(entities) == [("PERSON", "Smith", 13, 18), ("PERSON", "Smith", 20, 25)]


def test_issue_fallback_never_applies_to_a_repeat() -> None:
    document = "Apple sued. We ate an apple."
    entities, ungrounded = ground_entities([RawEntity("ORGANIZATION", "Apple")] * 2, _chunk(document))
    assert _spans(entities) == [("ORGANIZATION", "Apple", 0, 5)]
    assert ungrounded == 0  # the repeat is in the source: dropped, not counted as invented
    # A repeat that differs only in case is a repeat too.
    raw = [RawEntity("ORGANIZATION", "Apple"), RawEntity("ORGANIZATION", "APPLE")]
    assert ground_entities(raw, _chunk(document)) == ([Entity("ORGANIZATION", "Apple", 0, 5)], 0)


def test_issue_nfc_name_in_nfd_text() -> None:
    document = "Jose\u0301 Nu\u0301n\u0303ez signed."
    entities, ungrounded = ground_entities([RawEntity("PERSON", "José Núñez")], _chunk(document))
    assert ungrounded == 0
    assert _spans(entities) == [("PERSON", document[:13], 0, 13)]
    assert entities[0].text == "Jose\u0301 Nu\u0301n\u0303ez"  # the original (NFD) slice


def test_nfd_name_in_nfc_text_and_case_fallback_in_nfd() -> None:
    document = "Signed: José Núñez and JOSÉ NÚÑEZ."
    raw = [RawEntity("PERSON", unicodedata.normalize("NFD", "José Núñez"))]
    entities, _ = ground_entities(raw, _chunk(document))
    assert _spans(entities) == [("PERSON", "José Núñez", 8, 18)]
    nfd = unicodedata.normalize("NFD", "Witness: ZOË ÅSTRÖM.")
    (ent,), _ = ground_entities([RawEntity("PERSON", "Zoë Åström")], _chunk(nfd))
    assert ent.text == nfd[9:-1] and (ent.start, ent.end) == (9, len(nfd) - 1)


# --- grounding: moved from test_extraction.py --------------------------------------------------


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
    # The same with the document given for context.
    assert ground_entities([RawEntity("MONEY", "$500")], chunk, document=document) == ([entities[2]], 0)


def test_ground_case_insensitive() -> None:
    document = "xx ACME CORPORATION agreed."
    chunk = _chunk(document, 3)
    (ent,), ungrounded = ground_entities([RawEntity("ORGANIZATION", "Acme Corporation")], chunk)
    assert ungrounded == 0
    assert (ent.start, ent.end, ent.text) == (3, 19, "ACME CORPORATION")
    assert document[ent.start : ent.end] == ent.text


def test_ground_case_fallback_uses_full_case_folding() -> None:
    document = "Delivered to STRASSE 5."
    (ent,), _ = ground_entities([RawEntity("ORGANIZATION", "Straße")], _chunk(document))
    assert ent.text == "STRASSE"


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
    # Changed by issue #12: the third "Acme" no longer falls back to "acme" (the text has exact
    # occurrences), and mentions beyond the free occurrences are dropped instead of wrapping around.
    document = "Acme sued Beta. Then Acme paid. Finally acme left."
    chunk = _chunk(document)
    raw = [RawEntity("ORGANIZATION", "Acme")] * 3
    entities, ungrounded = ground_entities(raw, chunk)
    assert ungrounded == 0
    starts = [0, document.index("Then Acme") + 5]
    assert [e.start for e in entities] == starts
    assert [e.text for e in entities] == ["Acme", "Acme"]
    entities, ungrounded = ground_entities(raw * 2, chunk)
    assert ([e.start for e in entities], ungrounded) == (starts, 0)


def test_ground_repeat_of_an_invented_name_counts_as_ungrounded() -> None:
    raw = [RawEntity("PERSON", "Bob"), RawEntity("PERSON", "BOB")]
    assert ground_entities(raw, _chunk("Only Alice is here.")) == ([], 2)


def test_ground_unicode_offsets_are_code_points() -> None:
    prefix = "Zeuge 😀👩‍⚖️ 東京地方裁判所。 Ünïcödé: "
    document = prefix + "José Müller-Łukasiewicz and 東京地方裁判所 paid €5.000 🎉."
    chunk = _chunk(document, 4)
    raw = [
        RawEntity("PERSON", "José Müller-Łukasiewicz"),
        RawEntity("ORGANIZATION", "東京地方裁判所"),
        RawEntity("MONEY", "€5.000"),
        # Changed by issue #12: a case-only repeat no longer maps onto the same span again
        # (each occurrence is consumed once); it is dropped, not counted as ungrounded.
        RawEntity("PERSON", "JOSÉ MÜLLER-ŁUKASIEWICZ"),
    ]
    entities, ungrounded = ground_entities(raw, chunk, document=document)
    assert ungrounded == 0
    assert len(entities) == 3
    for ent, want in zip(entities, raw, strict=False):
        assert document[ent.start : ent.end] == ent.text == want.text
    assert entities[0].start == len(prefix)
    assert entities[0].end == len(prefix) + len("José Müller-Łukasiewicz")
    # The CJK name occurs twice; the first occurrence inside the chunk comes first.
    assert entities[1].start == document.index("東京地方裁判所")


# --- grounding: edges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "name", "want"),
    [
        # Words of spaced scripts: never a piece of a word, numbers included.
        ("Paid 1,500.00 and 500 later.", "500", (18, 21)),
        ("Paid $1.5 and 5 later.", "5", (14, 15)),
        ("Acme's lawyers met Acme.", "Acme", (0, 4)),  # a possessive ends the word
        ("Müller-Łukasiewicz signed.", "Müller", (0, 6)),  # so does a hyphen
        ("The Acme_Corp file and Acme.", "Acme", (23, 27)),  # an underscore does not
        ("Zoë\u0308s and Zoë.", "Zoë", (10, 13)),  # a combining mark belongs to its letter
        ("Der Straßenbau und die Straße.", "Straße", (23, 29)),
        # Scripts written without spaces: any grapheme boundary.
        ("東京都の東京地方裁判所", "東京地方裁判所", (4, 11)),
        ("iPhone手机很好", "手机", (6, 8)),
        ("トヨタ自動車の社長", "トヨタ", (0, 3)),
        ("ソニーグループ", "ソニー", (0, 3)),
        ("ฉันไปกรุงเทพเมื่อวาน", "กรุงเทพ", (5, 12)),
        ("서울에서 만났다", "서울", (0, 2)),
        # Grapheme clusters: never inside a flag pair, a ZWJ sequence or a skin-tone sequence.
        ("🇫🇷🇩🇪 flags", "🇩🇪", (2, 4)),
        ("👩‍⚖️ and 👩 here", "👩", (9, 10)),
        ("👍🏽 and 👍 too", "👍", (7, 8)),
    ],
)
def test_ground_edges(document: str, name: str, want: tuple[int, int]) -> None:
    entities, ungrounded = ground_entities([RawEntity("X", name)], _chunk(document))
    assert ungrounded == 0
    assert [(e.start, e.end) for e in entities] == [want]
    assert document[want[0] : want[1]] == entities[0].text


@pytest.mark.parametrize(
    ("document", "name"),
    [
        ("Smithson left.", "Smith"),
        ("Total 1,500 due.", "500"),
        ("Paid $1.5 only.", "1"),
        ("🇫🇷🇩🇪", "🇷🇩"),  # the middle of two flags is no flag
        ("👩‍⚖️", "👩"),
        ("Jose\u0301 came.", "Jose"),  # would cut the accent off
        ("e\u0301cole", "e"),
        ("Halvorsen", "sen"),
    ],
)
def test_ground_never_cuts_a_word_or_a_cluster(document: str, name: str) -> None:
    assert ground_entities([RawEntity("X", name)], _chunk(document)) == ([], 1)


def test_ground_chunk_cut_mid_word_is_judged_in_the_document() -> None:
    document = "Halvorsen Polymer Works delivered."
    chunk = _chunk(document, 6)  # "sen Polymer Works delivered."
    raw = [RawEntity("ORGANIZATION", "sen Polymer Works"), RawEntity("ORGANIZATION", "Polymer Works")]
    entities, ungrounded = ground_entities(raw, chunk, document=document)
    assert _spans(entities) == [("ORGANIZATION", "Polymer Works", 10, 23)]
    assert ungrounded == 1
    # Without the document the chunk's ends count as the ends of a text.
    entities, _ = ground_entities(raw[:1], chunk)
    assert _spans(entities) == [("ORGANIZATION", "sen Polymer Works", 6, 23)]
    with pytest.raises(ValueError, match="is not document"):
        ground_entities(raw, _chunk("other text here, long enough for the span", 6), document=document)


def test_ground_each_occurrence_once_across_types() -> None:
    document = "Jordan flew to Jordan."
    raw = [RawEntity("PERSON", "Jordan"), RawEntity("LOCATION", "Jordan"), RawEntity("MISC", "Jordan")]
    entities, ungrounded = ground_entities(raw, _chunk(document))
    assert _spans(entities) == [("PERSON", "Jordan", 0, 6), ("LOCATION", "Jordan", 15, 21)]
    assert ungrounded == 0


def test_ground_shorter_name_avoids_occurrences_of_a_longer_listed_name() -> None:
    document = "Halvorsen Polymer Works shall pay. Halvorsen Polymer Works may sue. Halvorsen agreed."
    raw = [RawEntity("ORGANIZATION", "Halvorsen Polymer Works"), RawEntity("ORGANIZATION", "Halvorsen")]
    entities, _ = ground_entities(raw, _chunk(document))
    # "Halvorsen" is not taken from inside the second (unlisted) mention of the whole name.
    assert _spans(entities) == [
        ("ORGANIZATION", "Halvorsen Polymer Works", 0, 23),
        ("ORGANIZATION", "Halvorsen", 68, 77),
    ]
    # With no standalone occurrence the piece is dropped (not counted as invented).
    entities, ungrounded = ground_entities(raw, _chunk(document[:67]))
    assert (_spans(entities), ungrounded) == ([("ORGANIZATION", "Halvorsen Polymer Works", 0, 23)], 0)


def test_ground_fallback_only_when_no_exact_occurrence() -> None:
    document = "SMITH met Smithson."
    (ent,), _ = ground_entities([RawEntity("PERSON", "Smith")], _chunk(document))
    assert (ent.text, ent.start) == ("SMITH", 0)  # "Smith" inside "Smithson" is no occurrence
    document = "Apple and APPLE."
    entities, _ = ground_entities(
        [RawEntity("ORGANIZATION", "APPLE"), RawEntity("ORGANIZATION", "Apple")], _chunk(document)
    )
    assert _spans(entities) == [("ORGANIZATION", "APPLE", 10, 15), ("ORGANIZATION", "Apple", 0, 5)]


def test_ground_blank_text_is_ungrounded() -> None:
    assert ground_entities([RawEntity("PERSON", "  ")], _chunk("Alice.")) == ([], 1)


# --- merge ---------------------------------------------------------------------------------------


def test_merge_dedupes_overlap_and_sorts() -> None:
    document = "x" * 10 + "Acme" + "." * 36 + "Ann" + "." * 27 + "$5" + "." * 18
    first = _chunk(document, 0, 60)
    second = _chunk(document, 40, len(document), 1)
    third = _chunk(document, 70, len(document), 2)
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
    merged = merge_entities([(first, chunk1), (second, chunk2), (third, chunk3)], document)
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
    ents_a, _ = ground_entities([RawEntity("PERSON", "Alice"), RawEntity("PERSON", "Bob")] * 2, a, document=document)
    ents_b, _ = ground_entities([RawEntity("PERSON", "Bob"), RawEntity("PERSON", "Alice")], b, document=document)
    merged = merge_entities([(a, ents_a), (b, ents_b)], document)
    assert [(e.text, e.start) for e in merged] == [("Alice", 0), ("Bob", 10), ("Bob", 24), ("Alice", 33)]
    assert all(document[e.start : e.end] == e.text for e in merged)


def test_merge_keeps_the_span_not_cut_by_a_chunk_edge() -> None:
    document = "The seller is Halvorsen Polymer Works of Oslo."
    name = document.index("Halvorsen")
    first = _chunk(document, 0, document.index("Polymer"))  # ends "... Halvorsen "
    second = _chunk(document, document.index("Polymer"), len(document), 1)  # starts "Polymer Works"
    whole = _chunk(document, 4, len(document), 2)
    piece1 = Entity("ORGANIZATION", "Halvorsen", name, name + 9)
    piece2 = Entity("ORGANIZATION", "Polymer Works", name + 10, name + 23)
    full = Entity("ORGANIZATION", "Halvorsen Polymer Works", name, name + 23)
    merged = merge_entities([(first, [piece1]), (second, [piece2]), (whole, [full])], document)
    assert merged == [full]
    # A cut piece also gives way to an uncut span of another type, and is kept when alone.
    person = Entity("PERSON", "Halvorsen", name, name + 9)
    assert merge_entities([(first, [person]), (whole, [full])], document) == [full]
    assert merge_entities([(first, [piece1]), (second, [piece2])], document) == [piece1, piece2]


def test_merge_uncut_overlaps_keep_the_longer_and_exact_duplicates_once() -> None:
    document = "Notice to Halvorsen Polymer Works was given."
    name = document.index("Halvorsen")
    a, b = _chunk(document, 0, 40), _chunk(document, 3, len(document), 1)
    full = Entity("ORGANIZATION", "Halvorsen Polymer Works", name, name + 23)
    piece = Entity("ORGANIZATION", "Polymer Works", name + 10, name + 23)
    other = Entity("LOCATION", "Polymer Works", name + 10, name + 23)
    assert merge_entities([(a, [piece, full]), (b, [full, other])], document) == [full, other]


def test_merge_stop_punctuation_means_not_cut() -> None:
    document = "Paid by Acme. Halvorsen Polymer Works agreed."
    second = _chunk(document, document.index("Halvorsen"), len(document), 1)
    first = _chunk(document, 0, document.index("Works") + 5)
    full = Entity("ORGANIZATION", "Halvorsen Polymer Works", 14, 37)
    piece = Entity("ORGANIZATION", "Halvorsen Polymer", 14, 31)
    # The name at the start of the second chunk follows a full stop: whole, so it is not cut.
    assert merge_entities([(first, [piece]), (second, [full])], document) == [full]


def test_merge_rejects_entities_that_are_not_the_document_slice() -> None:
    document = "Alice met Bob."
    with pytest.raises(ValueError, match="is not document"):
        merge_entities([(_chunk(document), [Entity("PERSON", "Bob", 0, 3)])], document)


# --- chunk boundaries: the Halvorsen contract ----------------------------------------------------

NAME = "Halvorsen Polymer Works"
CONTRACT = " ".join(
    [
        f"This agreement is made between {NAME} and the buyer.",
        f"{NAME} shall deliver the goods by March.",
        f"The buyer pays {NAME} within thirty days of delivery.",
        f"Notices to {NAME} go to its office in Oslo.",
        f"If {NAME} fails to deliver, the buyer may terminate.",
        f"Disputes between the parties and {NAME} go to arbitration.",
    ]
    * 3
)
PIECES = ("Halvorsen", "Halvorsen Polymer", "Polymer Works", "Works", "Polymer")


class _WordTokenizer:
    """One token per word (with the spaces after it): enough for ``chunk_document``."""

    exact = True
    name = "words"

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"\S+\s*", text)]


def _halvorsen_model(chunk: Chunk, every_mention: bool) -> list[RawEntity]:
    """What a model reading ``chunk`` might list: the whole name (once, or once per whole mention),
    and for a mention the chunk edge cuts, the visible words or the visible letters."""
    out: list[RawEntity] = []
    text = chunk.text
    for m in re.finditer(NAME, CONTRACT):
        a, b = m.start() - chunk.start, m.end() - chunk.start
        if a >= 0 and b <= len(text):
            if every_mention or not any(e.text == NAME for e in out):
                out.append(RawEntity("ORGANIZATION", NAME))
        elif a < len(text) and b > 0:  # cut by an edge: list what is visible
            visible = text[max(a, 0) : min(b, len(text))].strip()
            out.append(RawEntity("ORGANIZATION", visible))
            words = [w for w in PIECES if w in visible.split() or visible.startswith(w) or visible.endswith(w)]
            out += [RawEntity("ORGANIZATION", w) for w in words]
    return out


def _chunkings() -> list[list[Chunk]]:
    tokenizer = _WordTokenizer()
    out = [chunk_document("doc", CONTRACT, tokenizer, n, 0.25) for n in (8, 11, 17)]  # type: ignore[arg-type]
    # Hard cuts anywhere, mid-word included, with overlaps of 13 to 40 characters.
    for size, overlap in ((47, 13), (61, 29), (90, 40)):
        starts = range(0, len(CONTRACT), size - overlap)
        out.append([_chunk(CONTRACT, s, min(len(CONTRACT), s + size), i) for i, s in enumerate(starts)])
    return out


@pytest.mark.parametrize("mentions", MENTION_MODES)
@pytest.mark.parametrize("every_mention", [True, False])
def test_halvorsen_pieces_never_beside_the_whole_name(mentions: str, every_mention: bool) -> None:
    whole = [(m.start(), m.end()) for m in re.finditer(NAME, CONTRACT)]
    for chunks in _chunkings():
        responses = [(c, _halvorsen_model(c, every_mention)) for c in chunks]
        result = align_document(CONTRACT, responses, mentions=mentions)  # type: ignore[arg-type]
        names = [(e.start, e.end) for e in result.entities if e.text == NAME]
        pieces = [e for e in result.entities if e.text != NAME]
        for piece in pieces:
            assert not any(a < piece.end and piece.start < b for a, b in names), (piece, chunks[0].end)
            assert piece.text in PIECES, piece  # letters the edge cut off are never written
        _assert_no_same_type_overlap(result.entities)
        seen_whole = [w for w in whole if any(c.start <= w[0] and w[1] <= c.end for c in chunks)]
        if mentions == "all":
            # Every mention is written whole, and no piece is left anywhere.
            assert names == whole
            assert pieces == []
        elif every_mention:
            # Every mention some chunk saw whole is written whole; pieces only where none did.
            assert names == seen_whole
            for piece in pieces:
                assert not any(a <= piece.start and piece.end <= b for a, b in seen_whole), piece


def test_halvorsen_real_chunker_cuts_names() -> None:
    # The fixture is only useful if the chunkers do cut the name.
    cut = 0
    for chunks in _chunkings():
        for c in chunks:
            for m in re.finditer(NAME, CONTRACT):
                cut += m.start() < c.start < m.end() or m.start() < c.end < m.end()
    assert cut > 10


# --- every mention -------------------------------------------------------------------------------


def test_expand_mentions_marks_every_further_occurrence() -> None:
    document = "Acme Corp sued Acme. Acme lost to Acme Corp. Acmeville and ACME stayed out. Bob saw Acme Corp."
    listed = [Entity("ORGANIZATION", "Acme Corp", 0, 9), Entity("ORGANIZATION", "Acme", 15, 19)]
    out = expand_mentions(listed, document)
    assert _spans(out) == [
        ("ORGANIZATION", "Acme Corp", 0, 9),
        ("ORGANIZATION", "Acme", 15, 19),
        ("ORGANIZATION", "Acme", 21, 25),
        ("ORGANIZATION", "Acme Corp", 34, 43),
        ("ORGANIZATION", "Acme Corp", 84, 93),
    ]


def test_expand_mentions_leaves_ungrounded_ambiguous_and_taken_alone() -> None:
    document = "Jordan met Jordan in Jordan. Bob Jordan left."
    entities = [
        Entity("PERSON", "Jordan", 0, 6),
        Entity("LOCATION", "Jordan", 21, 27),
        Entity("PERSON", "Bob Jordan", 29, 39),
        Entity("PERSON", "Carl", -1, -1, grounded=False),
    ]
    out = expand_mentions(entities, document)
    # "Jordan" was listed as two types: ambiguous, not expanded; "Bob Jordan" has no other mention.
    assert out == sorted(entities, key=lambda e: (not e.grounded, e.start))


def test_expand_mentions_nfc_and_never_over_another_type() -> None:
    document = "José paid. Later Jose\u0301 left. Banco José lent."
    bank = document.index("Banco")
    entities = [Entity("PERSON", "José", 0, 4), Entity("ORGANIZATION", "Banco José", bank, bank + 10)]
    out = expand_mentions(entities, document)
    assert _spans(out) == [
        ("PERSON", "José", 0, 4),
        ("PERSON", "Jose\u0301", 17, 22),
        ("ORGANIZATION", "Banco José", bank, bank + 10),
    ]


def test_align_document_counts_and_modes() -> None:
    document = "Acme Corp sued Acme. Acme lost. Acme Corp appealed."
    chunks = [_chunk(document, 0, 32), _chunk(document, 21, len(document), 1)]
    responses = [
        (
            chunks[0],
            [RawEntity("ORGANIZATION", "Acme Corp"), RawEntity("ORGANIZATION", "Acme"), RawEntity("PERSON", "Zed")],
        ),
        (chunks[1], [RawEntity("ORGANIZATION", "Acme")]),
    ]
    listed = align_document(document, responses)
    assert isinstance(listed, Alignment)
    assert listed.ungrounded == 1
    assert _spans(listed.entities) == [
        ("ORGANIZATION", "Acme Corp", 0, 9),
        ("ORGANIZATION", "Acme", 15, 19),
        ("ORGANIZATION", "Acme", 21, 25),
    ]
    every = align_document(document, responses, mentions="all", keep_ungrounded=True)
    assert _spans(every.entities) == [
        ("ORGANIZATION", "Acme Corp", 0, 9),
        ("ORGANIZATION", "Acme", 15, 19),
        ("ORGANIZATION", "Acme", 21, 25),
        ("ORGANIZATION", "Acme Corp", 32, 41),
        ("PERSON", "Zed", -1, -1),
    ]
    with pytest.raises(ValueError, match="mentions must be one of"):
        align_document(document, responses, mentions="some")  # type: ignore[arg-type]


# --- property test -------------------------------------------------------------------------------

_NO_SPACE_TEST = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}ー]")
WORDS = [
    "Acme", "Corp", "Smith", "Smithson", "apple", "Apple", "de", "O'Brien", "1,500", "$5", "x", "Straße",
    "José", "Núñez", "Zoë", "Łukasiewicz", "Müller-Łukasiewicz", "Ångström",
    "東京", "東京都", "株式会社", "トヨタ", "コーヒー", "ひらがな", "서울에서", "서울", "กรุงเทพ", "ไทย",
    "😀", "👩‍⚖️", "👨‍👩‍👧", "🇩🇪", "🇫🇷🇩🇪", "👍🏽", "e\u0301", "a\u0308\u0301",
]  # fmt: skip
SEPARATORS = [" ", " ", " ", "  ", "\n", "\r\n", "\t", "", "", ". ", ", ", "-", "'", "(", ")", '"', "。"]


def _clusters(document: str) -> set[int]:
    return {0} | {m.end() for m in regex.finditer(r"\X", document)}


def _inside_word(document: str, pos: int, clusters: list[str], starts: dict[int, int]) -> bool:
    """Independent check: the clusters on both sides of ``pos`` start with a letter or digit (or
    ``_``) of a script written with spaces."""
    if pos in (0, len(document)):
        return False
    after = starts[pos]
    left, right = clusters[after - 1][0], clusters[after][0]

    def spaced_word(c: str) -> bool:
        return (unicodedata.category(c)[0] in "LN" or c == "_") and not _NO_SPACE_TEST.match(c)

    return spaced_word(left) and spaced_word(right)


def _assert_no_same_type_overlap(entities: Sequence[Entity]) -> None:
    by_type: dict[str, list[Entity]] = {}
    for e in entities:
        if e.grounded:
            by_type.setdefault(e.type, []).append(e)
    for spans in by_type.values():
        spans.sort(key=lambda e: (e.start, e.end))
        for x, y in itertools.pairwise(spans):
            assert x.end <= y.start, (x, y)


def _assert_valid(document: str, entities: Sequence[Entity]) -> None:
    bounds = _clusters(document)
    clusters = [m.group() for m in regex.finditer(r"\X", document)]
    starts: dict[int, int] = {}
    pos = 0
    for i, c in enumerate(clusters):
        starts[pos] = i
        pos += len(c)
    for e in entities:
        if not e.grounded:
            assert (e.start, e.end) == (-1, -1)
            continue
        assert 0 <= e.start < e.end <= len(document)
        assert document[e.start : e.end] == e.text
        assert e.start in bounds and e.end in bounds, e
        assert not _inside_word(document, e.start, clusters, starts), e
        assert not _inside_word(document, e.end, clusters, starts), e
    _assert_no_same_type_overlap(entities)


@st.composite
def _case(draw: st.DrawFn) -> tuple[str, list[tuple[Chunk, list[RawEntity]]]]:
    parts = draw(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), min_size=1, max_size=30))
    document = "".join(w + s for w, s in parts)
    if draw(st.booleans()):
        document = unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD"])), document)
    n = len(document)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=4))))
    bounds = [0, *cuts, n]
    chunks = []
    for i in range(len(bounds) - 1):
        start = max(0, bounds[i] - draw(st.integers(0, 12)))
        end = min(n, bounds[i + 1] + draw(st.integers(0, 12)))
        chunks.append(_chunk(document, start, end, i))
    types = ["PERSON", "ORGANIZATION", "LOCATION"]
    responses = []
    for chunk in chunks:
        raw = []
        for _ in range(draw(st.integers(0, 8))):
            kind = draw(st.integers(0, 4))
            if kind == 0 or not chunk.text:
                text = draw(st.sampled_from([*WORDS, "Acme Corp", "Nobody", "ZZZ"]))
            else:
                a = draw(st.integers(0, len(chunk.text) - 1))
                b = draw(st.integers(a + 1, min(len(chunk.text), a + 25)))
                text = chunk.text[a:b]
                change = draw(st.integers(0, 5))
                if change == 1:
                    text = text.upper()
                elif change == 2:
                    text = text.lower()
                elif change == 3:
                    text = " ".join(text.split()) or text
                elif change == 4:
                    text = unicodedata.normalize("NFC", text)
                elif change == 5:
                    text = unicodedata.normalize("NFD", text)
            raw.append(RawEntity(draw(st.sampled_from(types)), text))
        responses.append((chunk, raw))
    return document, responses


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case())
def test_property_every_written_entity_is_a_real_span(case: tuple[str, list[tuple[Chunk, list[RawEntity]]]]) -> None:
    document, responses = case
    per_chunk = []
    for chunk, raw in responses:
        entities, _ = ground_entities(raw, chunk, document=document, keep_ungrounded=True)
        _assert_valid(document, entities)
        per_chunk.append((chunk, entities))
    merged = merge_entities(per_chunk, document)
    _assert_valid(document, merged)
    _assert_valid(document, expand_mentions(merged, document))
    for mentions in MENTION_MODES:
        result = align_document(document, responses, mentions=mentions)  # type: ignore[arg-type]
        _assert_valid(document, result.entities)
