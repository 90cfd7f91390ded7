"""Every vllm-extract comparison in one session: same machine, model (tiny), corpus, entity types.

    .venv/bin/python bench/run_all.py              # the benchmark (~15-25 min on 2 cores)
    .venv/bin/python bench/run_all.py --quick      # smoke run (a few documents, 16 tokens)

Rows (each a function returning a dict):
  1 `vllm-extract run` (direct) vs raw `vllm.LLM.chat` on identical prompts/sampling  goal >= 0.97
  2 `vllm-extract run` (direct) vs one-request-at-a-time HTTP (the predecessor)        goal >= 5x
  3 HTTP with --concurrency N vs one-at-a-time HTTP
  4 `vllm-extract run` vs LangExtract on the same server: docs/s and exact-span share
  5 token counting + chunking throughput (MB/s) and its share of the run              goal < 2%
  6 peak RSS of the `vllm-extract` CLI process (HTTP backend) at 1x and 10x corpus   goal < 10% growth
  7 reproducibility: the same job three times, byte-identical entity lists          goal 100%
  8 quality on the hand-labelled examples/gold/: strict/partial F1 per extraction option
  9 grounded decoding's grammar: build + compile per chunk, share of the run          goal < 2%
 10 incremental rerun (--reuse) with 1% of 100 documents changed vs a full run
 11 reading a 200-page PDF: pages/s and share of the run over it
 12 the streaming run vs 0.1's windows: occupancy, idle share, docs/s, durable-record age at a kill
 13 pipeline ceiling: a scripted server answers every chunk of examples/gold/ with its gold entities
    (exact, repeated, reversed, upper-cased, cut pieces); strict/partial F1   goal exact >= 0.99
 14 how the model is asked: per-type questions, passes, examples from gold (F1, requests, prefix cache)

Rows not run in a session (`--rows`) are carried over from the previous bench/RESULTS.md, marked
with the date of the run that measured them.

Engines run one at a time: first one in-process `vllm.LLM` (rows 1, 7, 5; bench/_rows_direct.py),
closed before one local vLLM server starts (rows 2, 3, 4, 6; bench/_rows_server.py). Row 13 loads
no engine (a scripted loopback server, bench/_rows_ceiling.py; under a minute). Prints the
table and writes it, with the command, date, machine facts and versions, to bench/RESULTS.md.
Row 4 needs `.venv/bin/pip install langextract` (it adds packages only; without it the row
reports an error and the others still run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # first: sets HF_HUB_OFFLINE etc. before vLLM loads
from _common import Bench, Row
from _report import carried_rows, machine_facts, markdown, table
from _rows_asking import row14_asking
from _rows_ceiling import row13_pipeline_ceiling
from _rows_direct import row1_direct_vs_raw, row5_preparation, row7_reproducibility
from _rows_nightly import row10_incremental, row11_pdf_reading
from _rows_quality import row8_quality, row9_grammar_cost
from _rows_server import http_settings, row2_http_serial, row3_http_concurrent, row4_langextract, row6_memory
from _rows_stream import row12_stream_vs_windows
from corpus import write_corpus

QUICK = {
    "docs": 5, "max_tokens": 48, "chunk_tokens": 400, "long_every": 5, "long_paragraphs": 8, "rss_scale": 10,
    "stream_docs": 24, "stream_chunk_tokens": 400,
}  # fmt: skip
FULL = {
    "docs": 40, "max_tokens": 96, "chunk_tokens": 1200, "long_every": 10, "long_paragraphs": 40, "rss_scale": 10,
    "stream_docs": 200, "stream_chunk_tokens": 600,
}  # fmt: skip


# -- orchestration ---------------------------------------------------------------------------------
def _guarded(number: int, fn: Callable[..., Row], *args: Any) -> Row:
    print(f"row {number}: {fn.__name__} ...", flush=True)
    started = time.perf_counter()
    try:
        row = fn(*args)
    except Exception as exc:  # noqa: BLE001 - one failed row must not lose the others
        import traceback

        traceback.print_exc()
        row = {"title": fn.__name__, "error": f"{type(exc).__name__}: {exc}"}
    row["row"] = number
    row["seconds_taken"] = round(time.perf_counter() - started, 1)
    print(f"row {number}: done in {row['seconds_taken']:.0f}s: {row.get('result') or row.get('error')}", flush=True)
    return row


NEEDS = {2: {1}, 3: {1, 2}, 4: {1, 2, 3}, 5: {1}, 7: {1}, 9: {8}}  # rows that reuse an earlier row's runs
DIRECT_ROWS = {1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 14}


def with_dependencies(wanted: set[int]) -> set[int]:
    return wanted.union(*(NEEDS.get(n, set()) for n in wanted))


def direct_rows(b: Bench, wanted: set[int]) -> list[Row]:
    from vllm_extract import DirectVLLMClient

    started = time.perf_counter()
    client = DirectVLLMClient(b.plan.vllm, model_path=b.plan.model.path, max_model_len=b.plan.max_model_len)
    asyncio.run(client.connect())
    b.shared["engine_load_seconds"] = time.perf_counter() - started
    try:
        rows = []
        if 1 in wanted:
            rows.append(_guarded(1, row1_direct_vs_raw, b, client))
            for number, fn in ((7, row7_reproducibility), (5, row5_preparation)):
                if number in wanted:
                    ok = "direct" in b.shared
                    rows.append(_guarded(number, fn, b, client) if ok else _skip(number, "row 1 failed"))
        for number, fn in ((8, row8_quality), (9, row9_grammar_cost), (10, row10_incremental), (11, row11_pdf_reading)):
            if number in wanted:
                rows.append(_guarded(number, fn, b, client))
        if 12 in wanted:
            rows.append(_guarded(12, row12_stream_vs_windows, stream_bench(b), client))
        if 14 in wanted:
            rows.append(_guarded(14, row14_asking, b, client))
        return rows
    finally:
        asyncio.run(client.close())


def stream_bench(b: Bench) -> Bench:
    """Row 12's own corpus: more documents of mixed lengths, smaller chunks (several windows' worth)."""
    args = b.args
    kwargs = {"seed": 1234, "long_every": 4, "long_paragraphs": args.long_paragraphs // 2}
    corpus = write_corpus(b.work / "stream-corpus.jsonl", args.stream_docs, **kwargs)
    settings = common.make_settings(args.max_tokens, args.stream_chunk_tokens)
    return Bench(args, b.work, corpus, common.load_documents(corpus), settings)


def server_rows(b: Bench, wanted: set[int]) -> list[Row]:
    from vllm_extract.engine.models import prepare_tiny_model
    from vllm_extract.engine.server import LocalVLLMServer

    os.environ["VLLM_SERVER_DEV_MODE"] = "1"  # enables POST /reset_prefix_cache between timed runs
    server = LocalVLLMServer(
        prepare_tiny_model().path,
        max_model_len=8192,
        kv_cache_memory_bytes=common.KV_CACHE_BYTES,
        log_path=b.work / "server.log",
        extra_args=("--max-num-seqs", "256", "--max-num-batched-tokens", "16384"),  # as the direct engine
    )
    steps = ((2, row2_http_serial, "direct"), (3, row3_http_concurrent, "http_c1"), (4, row4_langextract, "http_cn"))
    rows: list[Row] = []
    with server as url:
        b.shared["server_start_seconds"] = server.startup_seconds
        if not common.reset_server_cache(url):
            print("warning: the server's prefix cache cannot be reset; HTTP rows may reuse cached prompts")
        warm = write_corpus(b.work / "warm.jsonl", 2, **b.corpus_kwargs())
        common.run_http(warm, b.work / "warm-out.jsonl", http_settings(b, url, 2))
        for number, fn, needs in steps:
            if number in wanted:
                rows.append(
                    _guarded(number, fn, b, url) if needs in b.shared else _skip(number, "an earlier row failed")
                )
        if 6 in wanted:
            rows.append(_guarded(6, row6_memory, b, url))
    return rows


def _skip(number: int, why: str) -> Row:
    return {"row": number, "title": f"row {number}", "error": f"skipped: {why}"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    parser.add_argument("--docs", type=int, help=f"corpus documents (default {FULL['docs']})")
    parser.add_argument("--max-tokens", type=int, help=f"completion budget per chunk (default {FULL['max_tokens']})")
    parser.add_argument("--chunk-tokens", type=int, help=f"chunk size (default {FULL['chunk_tokens']})")
    parser.add_argument("--long-every", type=int, help="every Nth document is long (default 10)")
    parser.add_argument("--long-paragraphs", type=int, help="paragraphs of a long document (default 40)")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds in row 1 (>= 3 feeds row 7)")
    parser.add_argument("--stream-docs", type=int, help="row 12: documents (default 200)")
    parser.add_argument("--conll", help="row 14: a CoNLL-2003-style test file, also scored (never commit it)")
    parser.add_argument("--stream-chunk-tokens", type=int, help="row 12: chunk size (default 600)")
    parser.add_argument("--row12-repeats", type=int, default=2, help="row 12: passes of each design (the better kept)")
    parser.add_argument("--concurrency", type=int, default=16, help="HTTP requests in flight, rows 3-4")
    parser.add_argument("--rss-scale", type=int, help="row 6: the big corpus is this many times larger")
    parser.add_argument("--rss-max-tokens", type=int, default=16, help="row 6: completion budget")
    parser.add_argument(
        "--lx-char-buffer", type=int, default=0, help="LangExtract max_char_buffer (0: same size as our chunks)"
    )
    parser.add_argument(
        "--rows",
        default="1,2,3,4,5,6,7,8,9,10,11,12,13,14",
        help="rows to run (rows they reuse run too: 2-5, 7 need 1; 3 needs 2; 4 needs 3; 9 needs 8); "
        "rows not run are carried over from --results",
    )
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    parser.add_argument("--work", type=Path, help="working folder (default: a new temporary one)")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    facts = machine_facts()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-all-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(work / "corpus.jsonl", args.docs, **common.corpus_kwargs(args))
    settings = common.make_settings(args.max_tokens, args.chunk_tokens)
    b = Bench(args, work, corpus, common.load_documents(corpus), settings)
    wanted = with_dependencies({int(x) for x in args.rows.split(",") if x.strip()})
    print(f"work folder {work}; {len(b.docs)} documents, {b.text_bytes} bytes; rows {sorted(wanted)}", flush=True)
    rows = direct_rows(b, wanted) if wanted & DIRECT_ROWS else []
    if wanted & {2, 3, 4, 6}:
        rows += server_rows(b, wanted)
    if 13 in wanted:
        rows.append(_guarded(13, row13_pipeline_ceiling, b))
    rows.sort(key=lambda r: r["row"])
    setup = {
        "model": "tiny (SmolLM2-135M-Instruct, the embedded demo model)",
        "entity types": ",".join(t.name for t in settings.extraction.entity_types),
        "corpus": f"{len(b.docs)} documents, {b.text_bytes / 1e6:.3f} MB (bench/corpus.py seed 1234, "
        f"long_every {args.long_every}, long_paragraphs {args.long_paragraphs})",
        "max_tokens / chunk_tokens": f"{args.max_tokens} / {args.chunk_tokens}",
        "retries of truncated output": "off (both sides of every comparison do the same work)",
        "engine load / server start": f"{b.shared.get('engine_load_seconds', 0):.0f}s / "
        f"{b.shared.get('server_start_seconds', 0):.0f}s",
        "load average at end": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    notes = [
        "Engines never overlap: the in-process vllm.LLM (rows 1, 5, 7) is shut down before the local "
        "vLLM server (rows 2, 3, 4, 6) starts; both use a 2 GiB KV cache, max_num_seqs 256, "
        "max_num_batched_tokens 16384, eager mode.",
        "Every timed pass starts from an empty prefix cache (`LLM.reset_prefix_cache()`; on the server "
        "`POST /reset_prefix_cache` with VLLM_SERVER_DEV_MODE=1), so no pass reuses an earlier pass's "
        "prompts; within a pass the shared instruction prefix is cached as in real use.",
        "Row 1 alternates the A/B order per round and compares best times; the engine is warmed first. "
        "Row 7 compares row 1's three vllm-extract passes.",
        "Row 4: LangExtract drives the same server via its OpenAI provider (schema constraints from "
        "one example, temperature 0, seed 42, same max_tokens, max_workers = --concurrency); its "
        "max_char_buffer is --chunk-tokens times the corpus's measured characters per token (the same "
        "chunk size as ours) unless --lx-char-buffer is given. "
        "Installed with `.venv/bin/pip install langextract`: it only added packages (pandas, "
        "google-genai, ...), torch/transformers/vllm unchanged.",
        "Row 13 runs the CLI (`--backend http --model tiny --chunk-tokens 256`, grounded decoding) against "
        "bench/_gold_server.py: the client sends token ids to /v1/completions, the server decodes them with "
        "the tiny tokenizer, finds the chunk in its gold document and answers the gold entities wholly "
        "inside it (the grammar it is sent is ignored); `eval`'s scorer then compares the output with "
        "examples/gold/gold.jsonl.",
        "Row 6 reads the CLI child's own ru_maxrss via os.wait4 (the engine runs in the server process).",
        "Working files: a temporary folder (or --work DIR).",
    ]
    carried = carried_rows(args.results, {r["row"] for r in rows}) if args.results.exists() else []
    text = markdown(rows, facts=facts, setup=setup, total_seconds=time.perf_counter() - started, quick=args.quick,
                    notes=notes, carried=carried)  # fmt: skip
    args.results.write_text(text)
    print("\n" + table(rows) + f"\n\nwritten to {args.results}; total {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
