"""bench/run_all.py rows on what the output is worth and what grounding costs (one in-process engine).

8 quality on the hand-labelled `examples/gold/`: strict and partial micro F1 per extraction option
9 grounded decoding's grammar: build + compile time per chunk, and its share of the run
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from _common import Bench, Row
from _quality import GOLD, quality_rows, table

from vllm_extract.config import Settings

QUALITY_VARIANTS = (
    "grounded",
    "grounded-all",
    "grounded-8",
    "grounded-sharp",
    "grounded-example",
    "schema",
    "schema-all",
)
QUALITY_MAX_TOKENS = 256  # the `--model tiny` default: what the quick start spends per chunk


def row8_quality(b: Bench, client: Any) -> Row:
    vllm = dataclasses.replace(b.settings.vllm, max_completion_tokens=QUALITY_MAX_TOKENS)
    settings = Settings(vllm, b.settings.extraction)
    rows = quality_rows(client, settings, b.work, QUALITY_VARIANTS)
    b.shared["quality"] = rows
    best = max(rows, key=lambda r: r["strict_f1"])
    by = {r["variant"]: r for r in rows}
    grounded, schema = by["--decoding grounded"], by["--decoding schema"]
    return {
        "title": f"quality on examples/gold/ (13 documents, 367 gold entities), per extraction option, "
        f"max_tokens {QUALITY_MAX_TOKENS}",
        "result": f"strict/partial micro F1: grounded {grounded['strict_f1']:.3f}/{grounded['partial_f1']:.3f}, "
        f"schema {schema['strict_f1']:.3f}/{schema['partial_f1']:.3f}; best: {best['variant']} "
        f"{best['strict_f1']:.3f}; ungrounded share grounded {grounded['ungrounded_share']:.1%} vs schema "
        f"{schema['ungrounded_share']:.1%}",
        "goal": "(none; the tiny model's floor, see the quality table)",
        "met": None,
        "markdown": "### Quality per extraction option (row 8)\n\n" + table(rows),
        "variants": {r["variant"]: {k: round(v, 4) for k, v in r.items() if isinstance(v, float)} for r in rows},
    }


def row9_grammar_cost(b: Bench, client: Any) -> Row:
    """Build + compile of every grounded request's grammar over the gold set, against the grounded
    quality run's wall time; and the cost on 12,000-token chunks (bench/_grammar_cost.py)."""
    from _grammar_cost import long_chunk, measure

    from vllm_extract.readers import Document, iter_documents
    from vllm_extract.run.pipeline import ExtractionPipeline
    from vllm_extract.run.plan import plan_for_client

    plan = plan_for_client(b.settings, client)
    pipeline = ExtractionPipeline(None, plan)
    chunks = [p.chunk.text for d in iter_documents([str(GOLD)]) if isinstance(d, Document) for p in pipeline.prepare(d)]
    tokenizer = client.get_tokenizer().raw
    started = time.perf_counter()
    gold = measure(chunks, tokenizer, config=plan.extraction, sample_entities=1)
    measured = time.perf_counter() - started
    grammar_seconds = (sum(gold["build_ms"]) + sum(gold["compile_ms"])) / 1000
    quality = {r["variant"]: r for r in b.shared.get("quality", [])}
    run_seconds = quality.get("--decoding grounded", {}).get("seconds", 0.0)
    share = grammar_seconds / run_seconds if run_seconds else float("nan")
    big = measure([long_chunk(tokenizer, 12000, offset=i) for i in range(2)], tokenizer, config=plan.extraction)
    return {
        "title": "grounded decoding: grammar build + compile, share of the run",
        "result": f"{share:.2%} of the grounded run ({grammar_seconds * 1000:.0f} ms for {len(chunks)} chunks of "
        f"{run_seconds:.1f}s); a 12,000-token chunk: {big['build_ms_mean']:.0f} ms build + "
        f"{big['compile_ms_mean']:.0f} ms compile, {big['mask_ms_per_token_mean']:.2f} ms per token mask",
        "goal": "< 2% of run time",
        "met": share < 0.02 if run_seconds else None,
        "gold_chunks": len(chunks),
        "gold_build_ms_mean": gold["build_ms_mean"],
        "gold_compile_ms_mean": gold["compile_ms_mean"],
        "big_chunk_tokens": big["chunk_tokens"],
        "big_build_ms": big["build_ms"],
        "big_compile_ms": big["compile_ms"],
        "measure_seconds": measured,
    }
