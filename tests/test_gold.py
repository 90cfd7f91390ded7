"""Gold files: loading and validating gold JSONL, CoNLL/BIO conversion, `gold from-conll`, examples/gold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from vllm_extract.cli import app
from vllm_extract.eval import GoldDocument, GoldSpan, load_gold, read_conll
from vllm_extract.exceptions import InputError

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


# load_gold ------------------------------------------------------------------------------------


def test_load_gold_keeps_order_and_offsets(tmp_path):
    text = "Zoë Marlow sued Acme Corp. in Dijon."
    path = write_jsonl(
        tmp_path / "gold.jsonl",
        [
            {"id": "b", "text": text, "entities": [{"type": "PARTY", "start": 0, "end": 10, "text": "Zoë Marlow"}]},
            {"id": 7, "entities": [{"type": "LOCATION", "start": 30, "end": 35}]},  # no text: not checked
            {"id": "a", "text": "", "entities": []},
        ],
    )
    path.write_text(path.read_text(encoding="utf-8") + "\n", encoding="utf-8")  # blank lines are skipped
    docs = load_gold(path)
    assert list(docs) == ["b", "7", "a"]
    assert docs["b"] == GoldDocument("b", text, (GoldSpan("PARTY", 0, 10),), 1)
    assert text[0:10] == "Zoë Marlow"  # code points: ë is one
    assert docs["7"].text is None and docs["7"].line == 2
    assert docs["a"].entities == ()


@pytest.mark.parametrize(
    ("line2", "message"),
    [
        ("{not json", ":2: not valid JSON"),
        ('["a list"]', ":2: expected a JSON object"),
        ('{"text": "no id"}', ":2: missing or empty 'id'"),
        ('{"id": ""}', ":2: missing or empty 'id'"),
        ('{"id": "x", "entities": [{"type": "PERSON", "start": 0}]}', ":2: document 'x', entity 0: 'start' and 'end'"),
        ('{"id": "x", "entities": [{"type": "PERSON", "start": 4, "end": 4}]}', ":2: document 'x', entity 0: bad span"),
        ('{"id": "x", "entities": [{"start": 0, "end": 1}]}', ":2: document 'x', entity 0: missing or empty 'type'"),
        ('{"id": "x", "entities": {"type": "PERSON"}}', ":2: document 'x': 'entities' must be a list"),
        ('{"id": "x", "text": "Ann", "entities": [{"type": "PERSON", "start": 0, "end": 4}]}', ":2: document 'x', "),
    ],
)
def test_load_gold_errors_name_the_line(tmp_path, line2, message):
    path = tmp_path / "gold.jsonl"
    path.write_text('{"id": "ok", "entities": []}\n' + line2 + "\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_gold(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_span_out_of_range_says_so(tmp_path):
    path = write_jsonl(
        tmp_path / "g.jsonl", [{"id": "x", "text": "Ann", "entities": [{"type": "P", "start": 0, "end": 4}]}]
    )
    with pytest.raises(InputError, match=r"g.jsonl:1: document 'x', entity 0: span \[0, 4\) is out of range"):
        load_gold(path)


def test_gold_text_span_mismatch_names_the_line(tmp_path):
    text = "Judge Ortega wrote for the panel."
    records = [
        {"id": "a", "text": "fine", "entities": []},
        {"id": "b", "text": text, "entities": [{"type": "JUDGE", "start": 5, "end": 12, "text": "Ortega"}]},
    ]
    with pytest.raises(InputError) as info:
        load_gold(write_jsonl(tmp_path / "g.jsonl", records))
    message = str(info.value)
    assert (
        "g.jsonl:2: document 'b', entity 0: span [5, 12) is ' Ortega' in the text but the entity says 'Ortega'"
        in message
    )


def test_duplicate_gold_ids_are_named_with_their_lines(tmp_path):
    records = [{"id": "a"}, {"id": "b"}, {"id": "a"}, {"id": "c"}, {"id": "b"}, {"id": "a"}]
    with pytest.raises(InputError) as info:
        load_gold(write_jsonl(tmp_path / "g.jsonl", records))
    assert "duplicate ids in the gold file: 'a' on lines 1, 3, 6; 'b' on lines 2, 5" in str(info.value)


def test_missing_gold_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read gold file"):
        load_gold(tmp_path / "nope.jsonl")


# CoNLL / BIO ------------------------------------------------------------------------------------

TOKENS = [  # token, IOB1, IOB2, IOBES
    ("Ann", "I-PER", "B-PER", "B-PER"),
    ("Lee", "I-PER", "I-PER", "E-PER"),
    ("Bob", "B-PER", "B-PER", "S-PER"),  # IOB1 needs B-: a PER right after a PER
    ("met", "O", "O", "O"),
    ("Acme", "I-ORG", "B-ORG", "B-ORG"),
    ("Widget", "I-ORG", "I-ORG", "I-ORG"),
    ("Corp", "I-ORG", "I-ORG", "E-ORG"),
    ("in", "O", "O", "O"),
    ("Paris", "I-LOC", "B-LOC", "S-LOC"),
    (",", "O", "O", "O"),
    ("France", "I-LOC", "B-LOC", "S-LOC"),
    (".", "O", "O", "O"),
]
SECOND = [("(", "O", "O", "O"), ("Dijon", "I-LOC", "B-LOC", "S-LOC"), (")", "O", "O", "O")]
THIRD = [("Zoë", "I-PER", "B-PER", "S-PER"), ("'s", "O", "O", "O"), ("$", "O", "O", "O"), ("5", "O", "O", "O")]


def conll_file(tmp_path: Path, scheme: int, *, sep: str = " ") -> Path:
    def block(rows: list[tuple[str, str, str, str]]) -> str:
        return "".join(f"{row[0]}{sep}NNP{sep}{row[scheme]}\n" for row in rows)

    text = f"-DOCSTART- -X- O\n\n{block(TOKENS)}\n{block(SECOND)}\n-DOCSTART- -X- O\n\n{block(THIRD)}\n"
    path = tmp_path / f"scheme{scheme}.conll"
    path.write_text(text, encoding="utf-8")
    return path


EXPECTED_TEXT_1 = "Ann Lee Bob met Acme Widget Corp in Paris, France.\n(Dijon)"
EXPECTED_SPANS_1 = [
    ("PER", "Ann Lee"),
    ("PER", "Bob"),
    ("ORG", "Acme Widget Corp"),
    ("LOC", "Paris"),
    ("LOC", "France"),
    ("LOC", "Dijon"),
]


def test_iob1_iob2_and_iobes_give_the_same_gold(tmp_path):
    results = [read_conll(conll_file(tmp_path, scheme), id_prefix="d") for scheme in (1, 2, 3)]
    assert results[0] == results[1] == results[2]
    first, second = results[0]
    assert first.id == "d-1" and second.id == "d-2"
    assert first.text == EXPECTED_TEXT_1
    assert [(s.type, first.text[s.start : s.end]) for s in first.entities] == EXPECTED_SPANS_1
    assert first.line == 3  # the first token's line
    assert second.text == "Zoë's $5"
    assert [(s.type, s.start, s.end) for s in second.entities] == [("PER", 0, 3)]


def test_tab_separated_and_default_id_prefix(tmp_path):
    docs = read_conll(conll_file(tmp_path, 2, sep="\t"))
    assert [d.id for d in docs] == ["scheme2-1", "scheme2-2"]
    assert docs[0].text == EXPECTED_TEXT_1


def test_per_sentence_and_no_docstart(tmp_path):
    path = tmp_path / "plain.bio"
    path.write_text("Ann B-PER\nsang O\n\n\nin O\nOslo B-LOC\n", encoding="utf-8")
    assert [(d.text, len(d.entities)) for d in read_conll(path)] == [("Ann sang\nin Oslo", 2)]
    docs = read_conll(path, per_sentence=True)
    assert [(d.id, d.text, d.entities) for d in docs] == [
        ("plain-1", "Ann sang", (GoldSpan("PER", 0, 3),)),
        ("plain-2", "in Oslo", (GoldSpan("LOC", 3, 7),)),
    ]


def test_a_byte_order_mark_is_not_text(tmp_path):
    # Files saved by Windows editors open with a BOM; it used to hide the first -DOCSTART- and
    # shift every offset of the first document by one.
    path = tmp_path / "bom.conll"
    path.write_bytes(b"\xef\xbb\xbf-DOCSTART- -X- O\n\nJohn B-PER\nlives O\n")
    assert [(d.text, d.entities) for d in read_conll(path)] == [("John lives", (GoldSpan("PER", 0, 4),))]
    gold = tmp_path / "bom.jsonl"
    line = b'{"id": "a", "text": "John lives", "entities": [{"type": "PER", "start": 0, "end": 4}]}\n'
    gold.write_bytes(b"\xef\xbb\xbf" + line)
    assert list(load_gold(gold)) == ["a"]


def test_io_tags_and_an_entity_at_sentence_end(tmp_path):
    path = tmp_path / "io.txt"
    path.write_text("visit PER\nto O\nNew LOC\nYork LOC\n", encoding="utf-8")
    (doc,) = read_conll(path)
    assert [(s.type, doc.text[s.start : s.end]) for s in doc.entities] == [("PER", "visit"), ("LOC", "New York")]


@pytest.mark.parametrize(
    ("content", "message"), [("Ann B-PER\nLee\n", ":2: expected a token and a tag"), ("Ann X-PER\n", ":1: tag 'X-PER'")]
)
def test_conll_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.conll"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_conll(path)


def test_cli_from_conll_writes_gold_that_load_gold_accepts(tmp_path):
    source = conll_file(tmp_path, 3)
    out = tmp_path / "gold.jsonl"
    result = runner.invoke(app, ["gold", "from-conll", str(source), "--out", str(out), "--id-prefix", "news"])
    assert result.exit_code == 0, result.output
    assert "2 documents, 7 entities" in result.output
    docs = load_gold(out)
    assert list(docs) == ["news-1", "news-2"]
    assert docs["news-1"].text == EXPECTED_TEXT_1
    # Refuses to overwrite without --overwrite: exit 2, one line, no traceback.
    again = runner.invoke(app, ["gold", "from-conll", str(source), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output and "Traceback" not in again.output
    assert runner.invoke(app, ["gold", "from-conll", str(source), "--out", str(out), "--overwrite"]).exit_code == 0


def test_cli_from_conll_to_stdout_and_bad_input(tmp_path):
    result = runner.invoke(app, ["gold", "from-conll", str(conll_file(tmp_path, 1)), "--out", "-"])
    assert result.exit_code == 0
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in lines] == ["scheme1-1", "scheme1-2"]
    bad = tmp_path / "bad.conll"
    bad.write_text("Ann Q-PER\n", encoding="utf-8")
    result = runner.invoke(app, ["gold", "from-conll", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "bad.conll:1: tag 'Q-PER'" in result.output
    assert not (tmp_path / "o.jsonl").exists()


# examples/gold ------------------------------------------------------------------------------------


def test_examples_gold_set_is_valid_and_large_enough():
    docs = load_gold(ROOT / "examples" / "gold" / "gold.jsonl")
    assert len(docs) >= 12
    from vllm_extract.config import DEFAULT_ENTITY_TYPES

    names = {t.name for t in DEFAULT_ENTITY_TYPES}
    spans = [s for d in docs.values() for s in d.entities]
    assert len(spans) >= 150
    assert {s.type for s in spans} == names  # every default type is used, and nothing else
    for doc in docs.values():
        assert doc.text is not None
        assert 150 <= len(doc.text.split()) <= 400, doc.id


def test_examples_gold_build_script_reproduces_gold_jsonl(tmp_path):
    folder = ROOT / "examples" / "gold"
    out = tmp_path / "gold.jsonl"
    subprocess.run([sys.executable, str(folder / "build.py"), "--out", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == (folder / "gold.jsonl").read_bytes()


@pytest.mark.slow
def test_from_conll_then_run_then_eval_end_to_end(tmp_path, tiny_model_path):
    """CoNLL -> gold JSONL -> `run` (tiny model, reads the gold file as input) -> `eval`, as a user would."""
    cli = [sys.executable, "-m", "vllm_extract.cli"]
    types = "PERSON,ORGANIZATION,LOCATION"
    maps = ["--map", "PER=PERSON", "--map", "ORG=ORGANIZATION", "--map", "LOC=LOCATION"]
    gold = tmp_path / "gold.jsonl"
    assert runner.invoke(app, ["gold", "from-conll", str(conll_file(tmp_path, 3)), "--out", str(gold)]).exit_code == 0
    out = tmp_path / "pred.jsonl"
    env = dict(os.environ, VLLM_EXTRACT_KV_CACHE_MEMORY_BYTES=str(1 << 30), HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [*cli, "run", str(gold), "--out", str(out), "--model", "tiny", "--max-tokens", "32", "--types", types],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode in (0, 1), run.stderr[-3000:]  # 1: some documents failed, still scored
    scored = subprocess.run(
        [*cli, "eval", str(out), "--gold", str(gold), "--json", *maps],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert scored.returncode == 0, scored.stderr
    data = orjson.loads(scored.stdout)
    assert data["documents"]["gold"] == 2 and data["documents"]["missing"] == []
    assert data["entities"]["gold"] == 7 and data["unmapped_gold_types"] == {}
    assert 0.0 <= data["micro"]["strict"]["f1"] <= data["micro"]["partial"]["f1"] <= 1.0
