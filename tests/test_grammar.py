"""The grounded-decoding grammar: its chunking rule, its shape, what llguidance accepts and rejects
with the tiny model's tokenizer, and the repeated-entity token share. No engine is started."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vllm_extract.config import EntityType, ExtractionConfig
from vllm_extract.exceptions import ModelNotLoadedError
from vllm_extract.extract.chunking import Chunk
from vllm_extract.extract.grammar import (
    build_grounded_grammar,
    grammar_is_valid,
    grounding_chunks,
    grounding_units,
    repeated_entity_token_share,
)
from vllm_extract.extract.grounding import ground_entities
from vllm_extract.extract.parsing import RawEntity

EXAMPLE_DOCS = Path(__file__).resolve().parent.parent / "examples" / "docs"
CONFIG = ExtractionConfig(
    entity_types=(EntityType("PERSON"), EntityType("ORGANIZATION")),
    max_entities_per_chunk=3,
    max_entity_chars=40,
)


def compact(*entities: tuple[str, str]) -> str:
    """A response as the grammar writes it: compact JSON, text JSON-escaped, non-ASCII raw."""
    items = [{"type": t, "text": x} for t, x in entities]
    return json.dumps({"entities": items}, ensure_ascii=False, separators=(",", ":"))


# --- the chunking rule (pure) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("Dr. John Smith met\nMary.", ["Dr", ".", " ", "John", " ", "Smith", " ", "met", "\n", "Mary", "."]),
        ("東京都の山田", ["東", "京", "都", "の", "山", "田"]),
        ("Acme株式会社 2024年", ["Acme", "株", "式", "会", "社", " ", "2024", "年"]),
        ("สมชาย ใจดี", ["ส", "ม", "ช", "า", "ย", " ", "ใ", "จ", "ดี"]),
        ("김철수가 왔다", ["김", "철", "수", "가", " ", "왔", "다"]),
        ("\u1100\u1161\u11a8\u1102\u1161", ["\u1100\u1161\u11a8", "\u1102\u1161"]),  # NFD Hangul
        ("Jose\u0301 O'Brien", ["Jose\u0301", " ", "O", "'", "Brien"]),
        ("a👨\u200d👩\u200d👧b 👍🏽 🇫🇷🇩🇪", ["a", "👨\u200d👩\u200d👧", "b", " ", "👍🏽", " ", "🇫🇷", "🇩🇪"]),
        ("x\u200d y", ["x\u200d", " ", "y"]),
        ('x\\y "q"\t\x01\r\n', ["x", "\\", "y", " ", '"', "q", '"', "\t", "\x01", "\r\n"]),
        ("", []),
    ],
)
def test_units_follow_words_graphemes_and_scripts(text: str, units: list[str]) -> None:
    assert grounding_units(text) == units
    assert "".join(grounding_units(text)) == text


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from('ab_1 \t\n\r\x1c.,"\\\u0301\u200déß東ส\u0e31🇫👍🏽\u1161'), max_size=40),
    st.integers(0, 1 << 16),
    st.integers(0, 1 << 16),
)
# A space and a skin-tone modifier are one cluster (" 🏽"): a span of a blank unit then that
# cluster was stripped into "🏽1", which starts inside the cluster, and dropped as ungrounded.
@example(text="1  🏽1", first=1, length=2)
@example(text="a \u0301b", first=1, length=1)  # a span that is a space with its mark, then a word
def test_every_span_the_grammar_allows_is_found_by_alignment(text: str, first: int, length: int) -> None:
    """The grammar's units are cut at alignment's edges: whatever the model writes, alignment
    places it as it is (no grounded-mode entity is ever dropped as ungrounded). ``first`` and
    ``length`` pick the run of units ``units[i:j]`` (taken modulo what the text has)."""
    units = grounding_units(text)
    if not units:
        return
    i = first % len(units)
    j = i + 1 + length % (len(units) - i)
    span = "".join(units[i:j])
    if not span.strip():
        return  # nothing but whitespace: not a name (the parser drops it)
    entities, ungrounded = ground_entities([RawEntity("PERSON", span)], Chunk("d", 0, 0, len(text), text, 0))
    assert ungrounded == 0 and len(entities) == 1, (text, span)
    assert text[entities[0].start : entities[0].end] == entities[0].text
    assert entities[0].text.strip() == span.strip()  # the name as written, less the blanks around it


def test_digits_joined_by_a_point_are_one_unit() -> None:
    """`40` cannot be written out of `€11.40` (it was, and alignment then dropped it)."""
    assert grounding_units("at €11.40 in") == ["at", " ", "€", "11.40", " ", "in"]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.data())
def test_every_run_of_chunks_decodes_to_a_substring(text: str, data: st.DataObject) -> None:
    chunks = grounding_chunks(text)
    assert "".join(chunks) == json.dumps(text, ensure_ascii=False)[1:-1]
    if chunks:
        i = data.draw(st.integers(0, len(chunks) - 1))
        j = data.draw(st.integers(i + 1, len(chunks)))
        assert json.loads('"' + "".join(chunks[i:j]) + '"') in text


def test_grammar_shape_is_fixed_whatever_the_chunk() -> None:
    nasty = 'start: "x"\n%ignore " "\nTYPE: /.*/\n"}]} ::= # // \x00'
    grammar = build_grounded_grammar(nasty, CONFIG)
    lines = grammar.splitlines()
    assert lines[0] == "%llguidance {}"
    assert lines[1].startswith("start: ")
    assert [line.split(":")[0] for line in lines[1:]] == ["start", "ent", "TYPE", "TEXT", "SPAN"]
    assert '("," ent){0,2}' in grammar
    assert "{1,40}" in grammar
    assert '"PERSON" | "ORGANIZATION"' in grammar


def test_nothing_to_extract_allows_only_the_empty_list() -> None:
    for text in ("", "  \n\t "):
        assert build_grounded_grammar(text, CONFIG) == '%llguidance {}\nstart: "{\\"entities\\":[" "]}"\n'
    assert build_grounded_grammar("Bob", CONFIG, max_entities=0).endswith('"]}"\n')
    with pytest.raises(ValueError, match="max_entities"):
        build_grounded_grammar("Bob", CONFIG, max_entities=-1)


def test_validation_without_llguidance_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llguidance", None)
    with pytest.raises(ModelNotLoadedError, match="llguidance is not installed"):
        grammar_is_valid('start: "a"\n')


# --- repeated-entity token share (pure) -----------------------------------------------------


def chars(text: str) -> int:
    return len(text)


def test_repeated_share_counts_repeats_of_type_and_text() -> None:
    a = '{"type":"PERSON","text":"Bob"}'
    b = '{"type":"ORGANIZATION","text":"Bob"}'
    content = '{"entities":[' + ",".join([a, b, a, a]) + "]}"
    assert repeated_entity_token_share(content, chars) == pytest.approx(2 * (len(a) + 1) / len(content))
    assert repeated_entity_token_share(compact(("PERSON", "Bob")), chars) == 0.0


def test_repeated_share_reads_spaced_and_cut_off_responses() -> None:
    a = '{"type": "PERSON", "text": "Bob"}'
    spaced = '{"entities": [' + a + ", " + a + "]}"
    assert repeated_entity_token_share(spaced, chars) == pytest.approx((len(a) + 1) / len(spaced))
    cut = '{"entities":[' + a + "," + a + "," + a[:12]
    assert repeated_entity_token_share(cut, chars) == pytest.approx((len(a) + 1 + 13) / len(cut))
    cut_new = '{"entities":[' + a + ',{"type":"PERSON","text":"Al'
    assert repeated_entity_token_share(cut_new, chars) == 0.0


@pytest.mark.parametrize("content", ["", "no json", '{"entities":', '{"other":[1,2]}', '{"entities":[1,"x",{'])
def test_repeated_share_never_raises(content: str) -> None:
    assert repeated_entity_token_share(content, chars) == 0.0


# --- llguidance: validity, acceptance, rejection --------------------------------------------

llguidance = pytest.importorskip("llguidance", reason="llguidance comes with vLLM")


def long_chunk(tokenizer: Any, tokens: int = 12000) -> str:
    texts = [p.read_text(encoding="utf-8") for p in sorted(EXAMPLE_DOCS.glob("*")) if p.suffix in (".txt", ".md")]
    parts: list[str] = []
    while len(tokenizer.encode("\n\n".join(parts), add_special_tokens=False)) < tokens:
        parts.extend(texts)
    return "\n\n".join(parts)


SPECIAL_CHUNKS = {
    "ascii": ("Dr. John Smith met Mary Jones.", "John Smith"),
    "quotes": ('The "Acme Corp" board', '"Acme Corp"'),
    "backslash": ("Filed under C:\\Cases\\Smith today", "C:\\Cases\\Smith"),
    "newline": ("Signed by\nMary Jones\nin Akron", "Mary Jones\nin Akron"),
    "newline start": ("Signed by\nMary Jones", "Mary Jones"),
    "tab": ("Name:\tAnn Lee\tAge", "Ann Lee\tAge"),
    "tab start": ("Name:\tAnn Lee", "Ann"),
    "control": ("Ref\x01Acme\x1fB", "Ref\x01Acme\x1fB"),
    "emoji": ("Team 👨\u200d👩\u200d👧 Smith 🇫🇷 Paris", "👨\u200d👩\u200d👧 Smith 🇫🇷"),
    "cjk": ("東京都に住む山田太郎と会った", "山田太郎"),
    "japanese mixed": ("株式会社Acmeの田中さん", "田中"),
    "thai": ("ผมชื่อสมชาย ใจดี ครับ", "สมชาย"),
    "nfd": ("Jose\u0301 Nu\u0301n\u0303ez signed.", "Jose\u0301 Nu\u0301n\u0303ez"),
}


@pytest.mark.parametrize("name", SPECIAL_CHUNKS)
def test_grammars_are_valid(name: str) -> None:
    text, _ = SPECIAL_CHUNKS[name]
    assert grammar_is_valid(build_grounded_grammar(text, CONFIG)) == (True, "")


def test_invalid_grammar_is_reported() -> None:
    ok, message = grammar_is_valid('start: "a" UNDEFINED\n')
    assert not ok
    assert "UNDEFINED" in message


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path) -> Any:
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(tiny_model_path))


@pytest.fixture(scope="module")
def ll_tokenizer(tokenizer: Any) -> Any:
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer)


@pytest.fixture(scope="module")
def accepts(tokenizer: Any, ll_tokenizer: Any) -> Callable[[str, str], bool]:
    """Whether the grammar takes the output's tokens and then accepts EOS (a complete answer)."""

    def check(grammar: str, output: str) -> bool:
        matcher = llguidance.LLMatcher(ll_tokenizer, llguidance.grammar_from("grammar", grammar), log_level=0)
        assert not matcher.is_error(), matcher.get_error()
        ids = tokenizer.encode(output, add_special_tokens=False)
        if not matcher.consume_tokens(ids) or not matcher.is_accepting():
            return False
        return bool(matcher.consume_token(tokenizer.eos_token_id)) and matcher.is_stopped()

    return check


@pytest.mark.parametrize("name", SPECIAL_CHUNKS)
def test_every_special_character_stays_extractable(name: str, accepts: Callable[[str, str], bool]) -> None:
    text, span = SPECIAL_CHUNKS[name]
    output = compact(("PERSON", span), ("ORGANIZATION", span))
    assert accepts(build_grounded_grammar(text, CONFIG), output)
    for item in json.loads(output)["entities"]:
        assert item["text"] in text


def test_lists_are_compact_typed_and_bounded(accepts: Callable[[str, str], bool]) -> None:
    grammar = build_grounded_grammar("Ann Bob Cid Dan", CONFIG)
    assert accepts(grammar, '{"entities":[]}')
    assert accepts(grammar, compact(("PERSON", "Ann"), ("ORGANIZATION", "Bob"), ("PERSON", "Ann")))
    assert not accepts(grammar, compact(("PERSON", "Ann"), ("PERSON", "Bob"), ("PERSON", "Cid"), ("PERSON", "Dan")))
    assert accepts(build_grounded_grammar("Ann Bob", CONFIG, max_entities=1), compact(("PERSON", "Ann")))
    assert not accepts(
        build_grounded_grammar("Ann Bob", CONFIG, max_entities=1), compact(("PERSON", "Ann"), ("PERSON", "Bob"))
    )
    assert not accepts(build_grounded_grammar("", CONFIG), compact(("PERSON", "Ann")))


@pytest.mark.parametrize(
    "output",
    [
        compact(("PERSON", "Ann Lee")),  # not in the chunk
        compact(("PERSON", "nn")),  # inside a word
        compact(("PERSON", "nMary")),  # the tail of the \n escape glued to a word
        compact(("PERSON", "")),  # empty
        compact(("LOCATION", "Ann")),  # unknown type
        compact(("person", "Ann")),  # types are case-sensitive
        '{"entities": []}',  # whitespace token
        '{"entities":[{"type": "PERSON","text":"Ann"}]}',
        '{"entities":[{"type":"PERSON","text":"Ann"} ]}',
        '{"entities":[{"type":"PERSON","text":"Ann\\"}]}',  # a dangling escape
        '{"entities":[{"text":"Ann","type":"PERSON"}]}',  # key order is fixed
        '{"entities":[]} ',
    ],
)
def test_rejected_outputs(output: str, accepts: Callable[[str, str], bool]) -> None:
    assert not accepts(build_grounded_grammar("Ann Bob\nMary Jones, Ann.", CONFIG), output)


def test_entity_text_is_bounded_in_escaped_characters(accepts: Callable[[str, str], bool]) -> None:
    config = ExtractionConfig(entity_types=(EntityType("PERSON"),), max_entity_chars=10)
    grammar = build_grounded_grammar("Ann Bobson Cid\nDan", config)
    assert accepts(grammar, compact(("PERSON", "Ann Bobson")))  # 10 characters
    assert not accepts(grammar, compact(("PERSON", "Ann Bobson Cid")))
    assert not accepts(grammar, compact(("PERSON", "Bobson Cid\nDan")))  # 14 decoded, 15 escaped


def test_type_names_are_json_escaped(accepts: Callable[[str, str], bool]) -> None:
    config = ExtractionConfig(entity_types=(EntityType('ODD"TYPE\\'), EntityType("ÉTAT")))
    grammar = build_grounded_grammar("Bob met Ann", config)
    assert accepts(grammar, compact(('ODD"TYPE\\', "Bob"), ("ÉTAT", "Ann")))


def test_a_12000_token_chunk(tokenizer: Any, accepts: Callable[[str, str], bool]) -> None:
    text = long_chunk(tokenizer)
    assert len(tokenizer.encode(text, add_special_tokens=False)) >= 12000
    grammar = build_grounded_grammar(text, ExtractionConfig())
    assert grammar_is_valid(grammar) == (True, "")
    last = [unit for unit in grounding_units(text) if unit.isalpha()][-1]
    assert accepts(grammar, compact(("PERSON", "Halvorsen Polymer Works"), ("DATE", last)))
    assert not accepts(grammar, compact(("PERSON", "Halvorsen Polymer Workshop")))


def test_a_per_type_grammar_allows_only_its_own_types(accepts: Callable[[str, str], bool]) -> None:
    """``--strategy per-type``: each request's grammar takes only the types its question asks about."""
    text = "Ann Lee of Acme Corp."
    person = build_grounded_grammar(text, CONFIG, types=["PERSON"])
    assert accepts(person, compact(("PERSON", "Ann Lee")))
    assert not accepts(person, compact(("ORGANIZATION", "Acme Corp")))
    assert not accepts(person, compact(("PERSON", "Ann Lee"), ("ORGANIZATION", "Acme Corp")))
    both = build_grounded_grammar(text, CONFIG)
    assert accepts(both, compact(("PERSON", "Ann Lee"), ("ORGANIZATION", "Acme Corp")))
