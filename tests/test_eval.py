"""`eval`: SemEval-2013 scoring against gold spans, with expectations computed by hand, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from vllm_extract.cli import app
from vllm_extract.eval import (
    GoldDocument,
    GoldSpan,
    PredDocument,
    PredEntity,
    evaluate,
    load_predictions,
    load_type_map_file,
    parse_type_map,
    render_text,
)
from vllm_extract.exceptions import ConfigurationError, InputError

runner = CliRunner()


def gold(*docs: tuple[str, list[tuple[str, int, int]]]) -> dict[str, GoldDocument]:
    return {i: GoldDocument(i, None, tuple(GoldSpan(*s) for s in spans), n) for n, (i, spans) in enumerate(docs, 1)}


def pred(*docs: tuple[str, list[tuple[str, int, int]]], status: str = "ok") -> dict[str, PredDocument]:
    return {
        i: PredDocument(i, status, tuple(PredEntity(t, s, e, grounded=s >= 0) for t, s, e in ents), n)
        for n, (i, ents) in enumerate(docs, 1)
    }


def counts(score) -> tuple[int, int, int, int, int]:
    return score.correct, score.incorrect, score.partial, score.missed, score.spurious


def prf(score) -> tuple[float, float, float]:
    return round(score.precision, 4), round(score.recall, 4), round(score.f1, 4)


# Matching ------------------------------------------------------------------------------------


def test_perfect_match():
    g = gold(("a", [("PERSON", 0, 7), ("DATE", 10, 20)]))
    result = evaluate(g, pred(("a", [("DATE", 10, 20), ("PERSON", 0, 7)])))
    for name in ("strict", "exact", "partial", "type"):
        assert counts(result.micro[name]) == (2, 0, 0, 0, 0)
        assert prf(result.micro[name]) == (1.0, 1.0, 1.0)
        assert result.macro[name].f1 == 1.0


def test_overlapping_span_per_schema():
    # gold "Akron, Ohio" [0, 11) LOCATION; predicted "Akron" [0, 5) LOCATION.
    result = evaluate(gold(("a", [("LOCATION", 0, 11)])), pred(("a", [("LOCATION", 0, 5)])))
    assert counts(result.micro["strict"]) == (0, 1, 0, 0, 0)  # overlap is not a strict match
    assert counts(result.micro["exact"]) == (0, 1, 0, 0, 0)
    assert counts(result.micro["partial"]) == (0, 0, 1, 0, 0)  # counts half: P = R = 0.5
    assert prf(result.micro["partial"]) == (0.5, 0.5, 0.5)
    assert counts(result.micro["type"]) == (1, 0, 0, 0, 0)  # overlap with the same type
    assert prf(result.micro["strict"]) == (0.0, 0.0, 0.0)


def test_same_span_other_type_per_schema():
    g = gold(("a", [("PERSON", 0, 5), ("JUDGE", 10, 16)]))
    result = evaluate(g, pred(("a", [("JUDGE", 0, 5), ("JUDGE", 10, 16)])))
    assert counts(result.micro["strict"]) == (1, 1, 0, 0, 0)
    assert counts(result.micro["exact"]) == (2, 0, 0, 0, 0)
    assert counts(result.micro["partial"]) == (2, 0, 0, 0, 0)
    assert counts(result.micro["type"]) == (1, 1, 0, 0, 0)
    # Per type, each type on its own: the JUDGE at [0, 5) is a spurious JUDGE and a missed PERSON.
    rows = {row.type: row for row in result.per_type}
    assert counts(rows["JUDGE"].scores["strict"]) == (1, 0, 0, 0, 1)
    assert counts(rows["PERSON"].scores["strict"]) == (0, 0, 0, 1, 0)
    assert (rows["JUDGE"].support, rows["JUDGE"].predicted) == (1, 2)
    # macro strict: JUDGE P 0.5 R 1 F1 2/3; PERSON 0 0 0 -> means 0.25, 0.5, 1/3
    assert prf(result.macro["strict"]) == (0.25, 0.5, 0.3333)


def test_adjacent_spans_do_not_overlap():
    # [0, 5) and [5, 10) share no character (nervaluate's ends are inclusive; ours are not).
    result = evaluate(gold(("a", [("PERSON", 0, 5)])), pred(("a", [("PERSON", 5, 10)])))
    for name in ("strict", "exact", "partial", "type"):
        assert counts(result.micro[name]) == (0, 0, 0, 1, 1), name
    one_char = evaluate(gold(("a", [("PERSON", 0, 5)])), pred(("a", [("PERSON", 4, 10)])))
    assert counts(one_char.micro["partial"]) == (0, 0, 1, 0, 0)


def test_two_predictions_on_one_gold_entity_match_it_once():
    # gold "Akron, Ohio" [0, 11); predicted "Akron" [0, 5) and "Ohio" [7, 11).
    result = evaluate(gold(("a", [("LOCATION", 0, 11)])), pred(("a", [("LOCATION", 0, 5), ("LOCATION", 7, 11)])))
    assert counts(result.micro["strict"]) == (0, 1, 0, 0, 1)
    assert counts(result.micro["partial"]) == (0, 0, 1, 0, 1)
    assert prf(result.micro["partial"]) == (0.25, 0.5, 0.3333)


def test_an_exact_match_is_not_taken_by_an_earlier_near_miss():
    result = evaluate(gold(("a", [("LOCATION", 0, 11)])), pred(("a", [("LOCATION", 0, 5), ("LOCATION", 0, 11)])))
    assert counts(result.micro["strict"]) == (1, 0, 0, 0, 1)
    assert prf(result.micro["strict"]) == (0.5, 1.0, 0.6667)


def test_one_span_with_two_gold_types():
    # "Acme" is both a PARTY and an ORGANIZATION in gold; the model says PARTY once.
    g = gold(("a", [("ORGANIZATION", 0, 4), ("PARTY", 0, 4)]))
    result = evaluate(g, pred(("a", [("PARTY", 0, 4)])))
    assert counts(result.micro["strict"]) == (1, 0, 0, 1, 0)
    assert prf(result.micro["strict"]) == (1.0, 0.5, 0.6667)
    assert counts(result.micro["exact"]) == (1, 0, 0, 1, 0)
    rows = {row.type: row for row in result.per_type}
    assert prf(rows["PARTY"].scores["strict"]) == (1.0, 1.0, 1.0)
    assert prf(rows["ORGANIZATION"].scores["strict"]) == (0.0, 0.0, 0.0)
    assert prf(result.macro["strict"]) == (0.5, 0.5, 0.5)
    # Both types predicted: both matched.
    both = evaluate(g, pred(("a", [("PARTY", 0, 4), ("ORGANIZATION", 0, 4)])))
    assert counts(both.micro["strict"]) == (2, 0, 0, 0, 0)


def test_a_predicted_duplicate_is_spurious():
    result = evaluate(gold(("a", [("PERSON", 0, 5)])), pred(("a", [("PERSON", 0, 5), ("PERSON", 0, 5)])))
    for name in ("strict", "exact", "partial", "type"):
        assert counts(result.micro[name]) == (1, 0, 0, 0, 1), name
    assert prf(result.micro["strict"]) == (0.5, 1.0, 0.6667)


def test_ungrounded_predictions_never_match_and_are_counted():
    # The model named "Ann Lee" but it is not in the text: offsets -1, grounded false.
    g = gold(("a", [("PERSON", 0, 5)]))
    result = evaluate(g, pred(("a", [("PERSON", 0, 5), ("PERSON", -1, -1), ("DATE", -1, -1)])))
    assert result.ungrounded == 1  # the DATE is of a type the gold never labels: unscored
    assert result.unscored_predicted_types == {"DATE": 1}
    assert counts(result.micro["strict"]) == (1, 0, 0, 0, 1)
    assert counts(result.micro["partial"]) == (1, 0, 0, 0, 1)
    (row,) = result.per_type
    assert (row.predicted, row.ungrounded) == (2, 1)
    assert counts(row.scores["strict"]) == (1, 0, 0, 0, 1)


def test_gold_document_missing_from_pred_and_error_record():
    g = gold(("a", [("PERSON", 0, 5), ("PERSON", 9, 12)]), ("b", [("PERSON", 0, 3)]), ("c", [("PERSON", 0, 4)]))
    p = pred(("a", [("PERSON", 0, 5), ("PERSON", 9, 12)]))
    p |= pred(("c", [("PERSON", 0, 4)]), status="error")  # an error record's entities are not scored
    p |= pred(("zzz", [("PERSON", 0, 4)]))  # no gold: ignored, counted
    result = evaluate(g, p)
    assert counts(result.micro["strict"]) == (2, 0, 0, 2, 0)
    assert prf(result.micro["strict"]) == (1.0, 0.5, 0.6667)
    d = result.documents
    assert (d.gold, d.predicted, d.scored) == (3, 3, 1)
    assert d.missing == ("b",) and d.errors == ("c",) and d.pred_without_gold == ("zzz",)
    assert result.gold_entities == 4 and result.predicted_entities == 2


def test_empty_gold_document_makes_its_predictions_spurious():
    g = gold(("a", [("PERSON", 0, 5)]), ("empty", []))
    result = evaluate(g, pred(("a", [("PERSON", 0, 5)]), ("empty", [("PERSON", 0, 3)])))
    assert counts(result.micro["strict"]) == (1, 0, 0, 0, 1)
    nothing = evaluate(gold(("empty", [])), pred(("empty", [])))
    assert counts(nothing.micro["strict"]) == (0, 0, 0, 0, 0)
    assert nothing.strict_f1 == 0.0 and nothing.per_type == ()


def test_unmapped_gold_types_are_listed_not_scored():
    g = gold(("a", [("PER", 0, 3), ("MISC", 5, 9), ("JUDGE", 11, 15), ("PER", 20, 23)]))
    p = pred(("a", [("PERSON", 0, 3), ("PERSON", 20, 23)]))
    plain = evaluate(g, p)
    # PER and MISC: not predicted, not one of our types -> unmapped. JUDGE is one of ours: a miss.
    assert plain.unmapped_gold_types == {"MISC": 1, "PER": 2}
    assert plain.unscored_predicted_types == {"PERSON": 2}
    assert [row.type for row in plain.per_type] == ["JUDGE"]
    assert counts(plain.micro["strict"]) == (0, 0, 0, 1, 0)
    mapped = evaluate(g, p, type_map={"PER": "PERSON"})
    assert mapped.unmapped_gold_types == {"MISC": 1}
    assert counts(mapped.micro["strict"]) == (2, 0, 0, 1, 0)
    assert [(row.type, row.support) for row in mapped.per_type] == [("JUDGE", 1), ("PERSON", 2)]
    # A gold type the model predicts is scored even if it is not one of the expected types.
    custom = evaluate(gold(("a", [("GENE", 0, 3)])), pred(("a", [("GENE", 0, 3)])))
    assert custom.unmapped_gold_types == {} and custom.strict_f1 == 1.0
    # --types replaces the default expected types.
    narrowed = evaluate(g, p, type_map={"PER": "PERSON"}, expected_types=["PERSON"])
    assert narrowed.unmapped_gold_types == {"JUDGE": 1, "MISC": 1}
    assert narrowed.strict_f1 == 1.0


def test_micro_and_macro_by_hand():
    # PERSON: 3 gold, 2 correct + 1 spurious -> P 2/3 R 2/3 F1 2/3
    # DATE:   1 gold, 1 correct               -> P 1   R 1   F1 1
    # micro: COR 3, MIS 1, SPU 1 -> P 3/4 R 3/4 F1 3/4; macro: P 5/6 R 5/6 F1 5/6
    g = gold(("a", [("PERSON", 0, 3), ("PERSON", 4, 7), ("PERSON", 8, 11), ("DATE", 20, 30)]))
    p = pred(("a", [("PERSON", 0, 3), ("PERSON", 4, 7), ("PERSON", 12, 15), ("DATE", 20, 30)]))
    result = evaluate(g, p)
    assert counts(result.micro["strict"]) == (3, 0, 0, 1, 1)
    assert prf(result.micro["strict"]) == (0.75, 0.75, 0.75)
    assert prf(result.macro["strict"]) == (0.8333, 0.8333, 0.8333)
    data = result.as_dict()
    assert data["micro"]["strict"]["possible"] == 4 and data["micro"]["strict"]["actual"] == 4
    assert [row["type"] for row in data["per_type"]] == ["DATE", "PERSON"]
    assert data["per_type"][1]["scores"]["strict"]["f1"] == pytest.approx(0.666667)


def test_render_text_is_plain_and_aligned():
    g = gold(("a", [("PERSON", 0, 3), ("DATE", 20, 30)]), ("b", [("PERSON", 0, 3)]))
    text = render_text(evaluate(g, pred(("a", [("PERSON", 0, 3), ("DATE", 20, 25)]))))
    lines = text.splitlines()
    assert lines[0].startswith("strict micro F1 0.400 · 2 gold documents, 1 scored")
    assert lines[2] == "micro and macro"
    assert lines[3].split() == ["schema", "P", "R", "F1", "COR", "INC", "PAR", "MIS", "SPU", "macro", "F1"]
    assert lines[4].split()[:9] == ["strict", "0.500", "0.333", "0.400", "1", "1", "0", "1", "0"]
    assert "missing from PRED, all gold counted as missed (1): b" in text
    assert "\x1b[" not in text


# Loading predictions and type maps -------------------------------------------------------------------


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_load_predictions_reads_run_records(tmp_path):
    records = [
        {
            "id": "a",
            "index": 0,
            "source": "in.jsonl",
            "metadata": {},
            "status": "ok",
            "entities": [
                {"type": "PERSON", "text": "Ann", "start": 0, "end": 3},
                {"type": "PERSON", "text": "Bo", "start": -1, "end": -1, "grounded": False},
            ],
        },
        {
            "id": "b",
            "index": 1,
            "source": "in.jsonl",
            "metadata": {},
            "status": "error",
            "error": {"kind": "context_overflow", "message": "too long"},
            "entities": [],
        },
    ]
    docs = load_predictions(write_jsonl(tmp_path / "p.jsonl", records))
    assert docs["a"].entities == (PredEntity("PERSON", 0, 3), PredEntity("PERSON", -1, -1, grounded=False))
    assert docs["b"].status == "error" and docs["b"].error_kind == "context_overflow"


def test_load_predictions_errors(tmp_path):
    dup = write_jsonl(tmp_path / "d.jsonl", [{"id": "x", "status": "ok"}, {"id": "y"}, {"id": "x"}])
    with pytest.raises(InputError, match=r"duplicate ids in the predictions: 'x' on lines 1, 3"):
        load_predictions(dup)
    bad = write_jsonl(tmp_path / "b.jsonl", [{"id": "x", "status": "done"}])
    with pytest.raises(InputError, match=r"b.jsonl:1: document 'x': unknown status 'done'"):
        load_predictions(bad)
    span = write_jsonl(tmp_path / "s.jsonl", [{"id": "x", "entities": [{"type": "P", "start": 5, "end": 2}]}])
    with pytest.raises(InputError, match=r"s.jsonl:1: document 'x', entity 0: bad span"):
        load_predictions(span)


def test_type_maps(tmp_path):
    assert parse_type_map(["PER=PERSON", " ORG = ORGANIZATION "]) == {"PER": "PERSON", "ORG": "ORGANIZATION"}
    for bad in (["PER"], ["=PERSON"], ["PER="], ["PER=PERSON", "PER=PARTY"]):
        with pytest.raises(ConfigurationError):
            parse_type_map(bad)
    lines = tmp_path / "map.txt"
    lines.write_text("# CoNLL-2003 onto ours\nPER=PERSON\n\nLOC=LOCATION  # places\n", encoding="utf-8")
    assert load_type_map_file(lines) == {"PER": "PERSON", "LOC": "LOCATION"}
    as_json = tmp_path / "map.json"
    as_json.write_text('{"PER": "PERSON"}', encoding="utf-8")
    assert load_type_map_file(as_json) == {"PER": "PERSON"}
    as_json.write_text('{"PER": 1}', encoding="utf-8")
    with pytest.raises(ConfigurationError):
        load_type_map_file(as_json)


# CLI ------------------------------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    text = "Ann Lee sued Acme Corp. in Akron, Ohio on May 2, 2024."
    g = write_jsonl(
        tmp_path / "gold.jsonl",
        [
            {
                "id": "d1",
                "text": text,
                "entities": [
                    {"type": "PER", "start": 0, "end": 7},
                    {"type": "ORGANIZATION", "start": 13, "end": 23},
                    {"type": "LOCATION", "start": 27, "end": 38},
                    {"type": "DATE", "start": 42, "end": 53},
                ],
            },
            {"id": "d2", "text": "Nothing here.", "entities": []},
        ],
    )
    p = write_jsonl(
        tmp_path / "pred.jsonl",
        [
            {
                "id": "d1",
                "status": "ok",
                "entities": [
                    {"type": "PERSON", "text": "Ann Lee", "start": 0, "end": 7},
                    {"type": "ORGANIZATION", "text": "Acme Corp", "start": 13, "end": 22},
                    {"type": "LOCATION", "text": "Akron, Ohio", "start": 27, "end": 38},
                    {"type": "DATE", "text": "May 2", "start": -1, "end": -1, "grounded": False},
                ],
            },
            {"id": "d2", "status": "ok", "entities": []},
        ],
    )
    return p, g


def test_cli_eval_plain_text(pair):
    p, g = pair
    result = runner.invoke(app, ["eval", str(p), "--gold", str(g), "--map", "PER=PERSON"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    # strict: COR 2 (PERSON, LOCATION), INC 1 (Acme Corp), MIS 1 (DATE), SPU 1 (ungrounded DATE)
    assert "strict micro F1 0.500" in out
    assert "strict   0.500  0.500  0.500    2    1    0    1    1" in out
    assert "partial  0.625  0.625  0.625    2    0    1    1    1" in out
    assert "type map: PER=PERSON" in out and "\x1b[" not in out


def test_cli_eval_json_and_min_f1(pair):
    p, g = pair
    result = runner.invoke(app, ["eval", str(p), "-g", str(g), "--map", "PER=PERSON", "--json", "--min-f1", "0.5"])
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["micro"]["strict"]["f1"] == 0.5
    assert data["entities"] == {"gold": 4, "predicted": 4, "ungrounded": 1}
    assert data["type_map"] == {"PER": "PERSON"}
    below = runner.invoke(app, ["eval", str(p), "-g", str(g), "--map", "PER=PERSON", "--min-f1", "0.51"])
    assert below.exit_code == 1
    assert "strict micro F1 0.5000 is below --min-f1 0.51" in below.stderr


def test_cli_eval_unmapped_types_and_map_file(pair, tmp_path):
    p, g = pair
    result = runner.invoke(app, ["eval", str(p), "--gold", str(g)])
    assert result.exit_code == 0
    assert "unmapped gold types, not scored (use --map GOLD=OURS): PER 1" in result.stdout
    assert "predicted types the gold never labels, not scored: PERSON 1" in result.stdout
    map_file = tmp_path / "map.txt"
    map_file.write_text("PER=PARTY\n", encoding="utf-8")
    result = runner.invoke(
        app, ["eval", str(p), "-g", str(g), "--map-file", str(map_file), "--map", "PER=PERSON", "--json"]
    )
    assert orjson.loads(result.stdout)["type_map"] == {"PER": "PERSON"}  # --map wins over the file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--map", "PER"], "--map: 'PER' is not GOLD=OURS"),
        (["--gold", "missing.jsonl"], "cannot read gold file"),
        (["--map-file", "missing.txt"], "cannot read map file"),
    ],
)
def test_cli_eval_usage_errors_exit_2_without_traceback(pair, args, message):
    p, g = pair
    result = runner.invoke(app, ["eval", str(p), "--gold", str(g), *args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_cli_eval_bad_pred_and_bad_gold_name_the_line(pair, tmp_path):
    p, g = pair
    with p.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "d1", "status": "ok"}\n')
    result = runner.invoke(app, ["eval", str(p), "--gold", str(g)])
    assert result.exit_code == 2 and "duplicate ids in the predictions: 'd1' on lines 1, 3" in result.stderr
    bad_gold = write_jsonl(
        tmp_path / "bad.jsonl", [{"id": "x", "text": "Ann", "entities": [{"type": "P", "start": 1, "end": 9}]}]
    )
    result = runner.invoke(app, ["eval", str(p), "--gold", str(bad_gold)])
    assert result.exit_code == 2 and "bad.jsonl:1: document 'x', entity 0: span [1, 9) is out of range" in result.stderr
    assert runner.invoke(app, ["eval", str(p), "--gold", str(g), "--min-f1", "2"]).exit_code == 2


def test_cli_eval_with_no_gold_document_in_pred_is_exit_2(pair, tmp_path):
    """PRED and gold with no id in common (the wrong file, another id scheme) printed F1 0 and
    exited 0; it is an input error now, naming an id of each side. Some in common: scored."""
    _, g = pair
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": "memo.txt", "status": "ok", "entities": []}])
    for args in ([], ["--json"]):
        result = runner.invoke(app, ["eval", str(other), "--gold", str(g), *args])
        assert result.exit_code == 2 and result.stdout == "", result.output
        assert "no document of" in result.stderr and "'memo.txt'" in result.stderr and "'d1'" in result.stderr
    some = write_jsonl(tmp_path / "some.jsonl", [{"id": "d2", "status": "ok", "entities": []}])
    assert runner.invoke(app, ["eval", str(some), "--gold", str(g)]).exit_code == 0  # d1 counts as missed


def test_cli_eval_rich_table_on_a_wide_terminal_plain_on_a_narrow_one(pair, monkeypatch):
    p, g = pair
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats stdout as a terminal
    monkeypatch.setenv("COLUMNS", "120")
    wide = runner.invoke(app, ["eval", str(p), "--gold", str(g), "--map", "PER=PERSON"])
    assert wide.exit_code == 0 and "\x1b[" in wide.stdout and "0.625" in wide.stdout
    monkeypatch.setenv("COLUMNS", "60")
    narrow = runner.invoke(app, ["eval", str(p), "--gold", str(g), "--map", "PER=PERSON"])
    assert "\x1b[" not in narrow.stdout
    assert "partial  0.625  0.625  0.625    2    0    1    1    1" in narrow.stdout
