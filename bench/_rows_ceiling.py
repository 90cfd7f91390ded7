"""bench/run_all.py row 13, the pipeline's ceiling: `vllm-extract run` against a scripted server that
answers every chunk with its gold entities (bench/_gold_server.py), then `eval`'s scorer. No engine.

  13 strict/partial micro F1 and entities written vs gold, per answer shape: exact (goal >= 0.99,
     a regression guard), every entity repeated, reversed, upper-cased, pieces of entities cut at
     chunk edges included

Each variant is a full CLI run (`python -m vllm_extract.cli run examples/gold/gold.jsonl --backend
http --server URL --model tiny --chunk-tokens N`): the tiny model's tokenizer is on this machine, so
the client sends token ids to /v1/completions and the server decodes them with the same tokenizer.
Grounded decoding (the default) stays on: the server ignores the grammar it is sent.

    python bench/_rows_ceiling.py [--chunk-tokens 256] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _gold_server import GoldServer

from vllm_extract.config import DEFAULT_ENTITY_TYPES
from vllm_extract.eval import evaluate, load_gold, load_predictions

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "examples" / "gold" / "gold.jsonl"
CEILING_VARIANTS = ("exact", "repeated", "reversed", "upper", "cut", "per-type")
# variant -> (how the server shapes its answers, extra `run` options)
_RUNS = {"per-type": ("exact", ("--strategy", "per-type"))}  # one question per type, gold answers
CEILING_CHUNK_TOKENS = 256
EXACT_GOAL = 0.99
SHOWN_LOSSES = 8  # missed / spurious spans listed per variant in the details


def tiny_tokenizer() -> Any:
    """The tiny model's Hugging Face tokenizer (the one the run encodes prompts with)."""
    from vllm_extract.engine.models import prepare_tiny_model
    from vllm_extract.run.plan import load_tokenizer

    return load_tokenizer(prepare_tiny_model().path).raw  # type: ignore[union-attr]


def run_cli(
    gold: Path, out: Path, url: str, chunk_tokens: int, log: Path, extra: Sequence[str] = ()
) -> tuple[int, float, dict[str, Any]]:
    """One `vllm-extract run` over ``gold``: (exit code, seconds, its --report JSON)."""
    report = out.with_suffix(".report.json")
    command = [
        sys.executable, "-m", "vllm_extract.cli", "run", str(gold), "--out", str(out), "--backend", "http",
        "--server", url, "--model", "tiny", "--chunk-tokens", str(chunk_tokens), "--report", str(report),
        "--overwrite", "--quiet", *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    with open(log, "ab") as sink:
        code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.perf_counter() - started
    data = json.loads(report.read_text()) if report.exists() else {}
    return code, seconds, data


def score(gold_path: Path, out: Path) -> dict[str, Any]:
    """`eval`'s scorer on one run's output, plus the spans it missed and added (strict)."""
    gold = load_gold(gold_path)
    predictions = load_predictions(out)
    scored = evaluate(gold, predictions, expected_types=[t.name for t in DEFAULT_ENTITY_TYPES])
    want = {(d.id, e.type, e.start, e.end) for d in gold.values() for e in d.entities}
    got = {(p.id, e.type, e.start, e.end) for p in predictions.values() for e in p.entities if e.grounded}
    texts = {d.id: d.text or "" for d in gold.values()}

    def shown(spans: set[tuple[str, str, int, int]]) -> list[str]:
        return [f"{i} {t} {texts[i][a:b]!r}@{a}" for i, t, a, b in sorted(spans)[:SHOWN_LOSSES]]

    return {
        "strict_f1": scored.micro["strict"].f1,
        "partial_f1": scored.micro["partial"].f1,
        "predicted": sum(len(p.entities) for p in predictions.values()),
        "gold": len(want),
        "errors": sum(p.status != "ok" for p in predictions.values()),
        "missed": len(want - got),
        "spurious": len(got - want),
        "missed_examples": shown(want - got),
        "spurious_examples": shown(got - want),
    }


def ceiling_rows(
    work: Path, *, variants: Sequence[str] = CEILING_VARIANTS, chunk_tokens: int = CEILING_CHUNK_TOKENS
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per variant, and what the server saw over all of them."""
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    seen: dict[str, Any] = {}
    with GoldServer(GOLD, tiny_tokenizer()) as server:
        for name in variants:
            server.variant, extra = _RUNS.get(name, (name, ()))
            server.reset_counts()
            out = work / f"ceiling-{name}.jsonl"
            code, seconds, report = run_cli(GOLD, out, server.url, chunk_tokens, work / "ceiling.log", extra)
            summary = report.get("summary", report)
            row = {"variant": name, "exit_code": code, "seconds": seconds, **score(GOLD, out)}
            row["chunks"] = summary.get("chunks")
            row["ungrounded_dropped"] = summary.get("ungrounded_dropped")
            rows.append(row)
            seen[name] = {
                "requests": dict(server.requests),
                "constrained": dict(server.constrained),
                "unlocated": server.unlocated,
                "questions": server.questions,
            }
            print(f"ceiling: {name}: {row}", flush=True)
    return rows, seen


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| answers | strict F1 | partial F1 | entities written / gold | missed / spurious (strict) | chunks | exit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['strict_f1']:.4f} | {r['partial_f1']:.4f} | {r['predicted']} / {r['gold']} | "
            f"{r['missed']} / {r['spurious']} | {r['chunks']} | {r['exit_code']} |"
        )
    return "\n".join(lines)


def row13_pipeline_ceiling(b: Any) -> dict[str, Any]:
    rows, seen = ceiling_rows(b.work / "ceiling")
    by = {r["variant"]: r for r in rows}
    exact = by["exact"]
    others = ", ".join(f"{r['variant']} {r['strict_f1']:.3f}/{r['partial_f1']:.3f}" for r in rows if r is not exact)
    losses = [
        f"{r['variant']}: missed {r['missed_examples']}, spurious {r['spurious_examples']}"
        for r in rows
        if r["missed"] or r["spurious"]
    ]
    return {
        "title": f"pipeline ceiling: scripted server answering gold entities, examples/gold/, chunk_tokens "
        f"{CEILING_CHUNK_TOKENS}",
        "result": f"strict/partial micro F1: exact {exact['strict_f1']:.3f}/{exact['partial_f1']:.3f} "
        f"({exact['predicted']} of {exact['gold']} written); {others}",
        "goal": f"exact >= {EXACT_GOAL} (others for reference)",
        "met": exact["strict_f1"] >= EXACT_GOAL and exact["exit_code"] == 0,
        "limit": "; ".join(losses) or "see the ceiling table",
        "variants": {
            r["variant"]: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "variant"}
            for r in rows
        },
        "server": seen,
        "markdown": "### Pipeline ceiling per answer shape (row 13)\n\n" + table(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunk-tokens", type=int, default=CEILING_CHUNK_TOKENS)
    parser.add_argument("--variants", default=",".join(CEILING_VARIANTS))
    parser.add_argument("--work", type=Path, help="working folder (default: a new temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    rows, seen = ceiling_rows(work, variants=variants, chunk_tokens=args.chunk_tokens)
    print(table(rows))
    print(json.dumps(seen, indent=1))
    for r in rows:
        print(r["variant"], "missed", r["missed_examples"], "spurious", r["spurious_examples"])


if __name__ == "__main__":
    main()
