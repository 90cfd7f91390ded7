"""Scoring a run against hand-labelled gold spans, and building gold files.

* ``gold``: load and validate gold JSONL (``load_gold``, ``GoldDocument``, ``GoldSpan``).
* ``predictions``: read a ``run`` output (``load_predictions``).
* ``conll``: CoNLL/BIO (IOB1, IOB2, IOBES) files to gold documents (``read_conll``).
* ``typemap``: ``GOLD=OURS`` type maps (``parse_type_map``, ``load_type_map_file``).
* ``scoring``: precision/recall/F1 with the SemEval-2013 task 9.1 schemas (``evaluate``).
* ``render``: the plain-text tables (``render_text``).

This package never imports typer or rich; only ``vllm_extract.cli`` does.

    from vllm_extract.eval import evaluate, load_gold, load_predictions
    result = evaluate(load_gold(Path("gold.jsonl")), load_predictions(Path("entities.jsonl")))
    print(result.micro["strict"].f1)
"""

from __future__ import annotations

from .conll import read_conll
from .gold import GoldDocument, GoldSpan, load_gold, write_gold
from .predictions import PredDocument, PredEntity, load_predictions
from .render import render_text
from .scoring import SCHEMAS, Averages, DocumentCounts, EvalResult, Score, TypeResult, evaluate
from .typemap import load_type_map_file, parse_type_map

__all__ = [
    "SCHEMAS",
    "Averages",
    "DocumentCounts",
    "EvalResult",
    "GoldDocument",
    "GoldSpan",
    "PredDocument",
    "PredEntity",
    "Score",
    "TypeResult",
    "evaluate",
    "load_gold",
    "load_predictions",
    "load_type_map_file",
    "parse_type_map",
    "read_conll",
    "render_text",
    "write_gold",
]
