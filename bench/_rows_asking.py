"""bench/run_all.py row 14: how the model is asked (issue 22), each option alone and the promising
combinations, on the same engine, budgets and documents.

Sets: ``examples/gold/`` split in two by a fixed rule: the example pool is the first
``POOL_DOCUMENTS`` documents of the file, scored never; every option is scored on the rest. With
``--conll FILE`` (a CoNLL-2003-style test file, never committed), the set ``gold from-conll`` builds
from it is split the same way and scored too. Per option: strict and partial micro F1, entities per
document, requests per chunk, prompt tokens sent and the share the prefix cache served, generated
tokens, documents/s. The engine's prefix cache is emptied before each option.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

from _common import Bench, Row

from vllm_extract import RunOptions, Settings, run_job
from vllm_extract.config import EntityType
from vllm_extract.eval import evaluate, load_gold, load_predictions

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "examples" / "gold" / "gold.jsonl"
POOL_DOCUMENTS = 3  # of examples/gold/'s 13: the example pool; the other 10 are scored
ASKING_MAX_TOKENS = 128

# name -> extraction settings changed ("examples": True = the pool file)
OPTIONS: dict[str, dict[str, Any]] = {
    "all-types (default)": {},
    "per-type": {"strategy": "per-type"},
    "passes 2": {"passes": 2},
    "examples": {"examples": True},
    "per-type + examples": {"strategy": "per-type", "examples": True},
    "examples + passes 2": {"examples": True, "passes": 2},
}


CONLL_TYPES = (
    EntityType("PER", "A person's name."),
    EntityType("ORG", "A named organization: company, team, agency, party, institution."),
    EntityType("LOC", "A named place: country, city, region, landmark."),
    EntityType("MISC", "Another named entity: nationality, event, work, product, language."),
)
CONLL_DOCUMENTS = 40  # the first documents of the file: about 10 minutes per option on 2 cores


def _conll_gold(conll: Path, work: Path) -> Path:
    """The first CONLL_DOCUMENTS documents of a CoNLL file as gold JSONL (``gold from-conll``'s reader)."""
    from vllm_extract.eval.conll import read_conll
    from vllm_extract.eval.gold import write_gold

    built = work / "asking-conll-gold.jsonl"
    write_gold(read_conll(conll)[:CONLL_DOCUMENTS], built)
    return built


def _split(gold_file: Path, work: Path, name: str) -> tuple[Path, Path]:
    """The pool (first POOL_DOCUMENTS lines) and the scored set (the rest), as two gold files."""
    lines = [line for line in gold_file.read_bytes().splitlines(keepends=True) if line.strip()]
    pool, scored = work / f"asking-{name}-pool.jsonl", work / f"asking-{name}-scored.jsonl"
    pool.write_bytes(b"".join(lines[:POOL_DOCUMENTS]))
    scored.write_bytes(b"".join(lines[POOL_DOCUMENTS:]))
    return pool, scored


def _measure(
    client: Any, base: Settings, pool: Path, scored: Path, out: Path, changes: dict[str, Any]
) -> dict[str, Any]:
    changes = dict(changes)
    if changes.pop("examples", False):
        changes["examples_file"] = str(pool)
    settings = Settings(base.vllm, dataclasses.replace(base.extraction, **changes))
    asyncio.run(client.reset_prefix_cache())
    started = time.perf_counter()
    result = asyncio.run(run_job([str(scored)], out, settings, RunOptions(overwrite=True), client=client))
    seconds = time.perf_counter() - started
    gold = load_gold(scored)
    predictions = load_predictions(out)
    score = evaluate(gold, predictions, expected_types=settings.extraction.type_names)
    s = result.summary
    return {
        "strict_f1": score.micro["strict"].f1,
        "partial_f1": score.micro["partial"].f1,
        "entities_per_doc": sum(len(p.entities) for p in predictions.values()) / max(len(gold), 1),
        "requests_per_chunk": s.requests / max(s.chunks, 1),
        "prompt_tokens": s.prompt_tokens,
        "cached_share": s.cached_tokens / max(s.prompt_tokens, 1),
        "generated_tokens": s.completion_tokens,
        "docs_per_s": s.documents / seconds,
        "seconds": seconds,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| set | option | strict F1 | partial F1 | entities/doc | requests/chunk | prompt tokens | "
        "from prefix cache | generated tokens | docs/s |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    return head + "".join(
        f"| {r['set']} | {r['option']} | {r['strict_f1']:.3f} | {r['partial_f1']:.3f} | {r['entities_per_doc']:.1f} | "
        f"{r['requests_per_chunk']:.2f} | {r['prompt_tokens']:,} | {r['cached_share']:.1%} | "
        f"{r['generated_tokens']:,} | {r['docs_per_s']:.3f} |\n"
        for r in rows
    )


def row14_asking(b: Bench, client: Any) -> Row:
    vllm = dataclasses.replace(b.settings.vllm, max_completion_tokens=ASKING_MAX_TOKENS)
    base = Settings(vllm, b.settings.extraction)
    sets = [("examples/gold", GOLD)]
    conll = getattr(b.args, "conll", None)
    if conll:
        sets.append((f"CoNLL {Path(conll).name}", _conll_gold(Path(conll), b.work)))
    rows = []
    for set_name, gold_file in sets:
        types = CONLL_TYPES if set_name.startswith("CoNLL") else base.extraction.entity_types
        settings = Settings(base.vllm, dataclasses.replace(base.extraction, entity_types=types))
        slug = set_name.replace("/", "-").replace(" ", "-")
        pool, scored = _split(gold_file, b.work, slug)
        for number, (option, changes) in enumerate(OPTIONS.items()):
            out = b.work / f"asking-{slug}-{number}.jsonl"
            row = {"set": set_name, "option": option} | _measure(client, settings, pool, scored, out, changes)
            print(f"asking: {row}", flush=True)
            rows.append(row)
    by = {(r["set"], r["option"]): r for r in rows}
    default, per_type = by[("examples/gold", "all-types (default)")], by[("examples/gold", "per-type")]
    best = max((r for r in rows if r["set"] == "examples/gold"), key=lambda r: r["strict_f1"])
    conll_note = "" if conll else "; CoNLL set not run (no --conll FILE given)"
    return {
        "title": f"how the model is asked, on examples/gold/ ({POOL_DOCUMENTS} documents as example pool, the rest "
        f"scored), max_tokens {ASKING_MAX_TOKENS}",
        "result": f"strict F1: all-types {default['strict_f1']:.3f}, per-type {per_type['strict_f1']:.3f} "
        f"({per_type['requests_per_chunk']:.1f} requests/chunk, {per_type['cached_share']:.0%} of prompt tokens "
        f"from the prefix cache); best {best['option']} {best['strict_f1']:.3f}{conll_note}",
        "goal": "(none; the tiny model's floor, see the table)",
        "met": None,
        "markdown": "### How the model is asked (row 14)\n\n" + _table(rows),
        "options": rows,
    }
