"""bench/run_all.py rows that use one local vLLM server: 2, 3, 4 and 6."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import _common as common
from _common import Bench, Row
from _common import docs_per_second as _dps
from corpus import write_corpus

from vllm_extract import Settings


def http_settings(b: Bench, url: str, concurrency: int) -> Settings:
    return common.make_settings(b.args.max_tokens, b.args.chunk_tokens, base_url=url, concurrency=concurrency)


def row2_http_serial(b: Bench, url: str) -> Row:
    seconds, result = common.run_http(b.corpus, b.work / "http-c1.jsonl", http_settings(b, url, 1))
    b.shared["http_c1"] = (seconds, result.summary)
    direct_seconds, direct = b.shared["direct"]
    speedup = seconds / direct_seconds
    serial_tps = result.summary.completion_tokens / seconds
    direct_tps = direct.completion_tokens / direct_seconds
    return {
        "title": "vllm-extract run (direct) vs one-at-a-time HTTP (predecessor)",
        "result": f"{speedup:.2f}x ({_dps(len(b.docs), direct_seconds):.2f} vs "
        f"{_dps(len(b.docs), seconds):.2f} docs/s)",
        "goal": ">= 5x",
        "met": speedup >= 5,
        "limit": f"both paths pay the same prefill ({direct.prompt_tokens} prompt tokens for "
        f"{direct.completion_tokens} generated, every pass from an empty prefix cache); prefill is compute-bound "
        f"on {os.cpu_count()} CPU cores and batching does not speed it up, so only decoding gains "
        f"({serial_tps:.0f} tokens/s one at a time vs {direct_tps:.0f} batched, prefill included). Longer "
        "completions (--max-tokens) or a GPU, where decoding is memory-bound, widen the gap",
        "speedup": speedup,
        "http_c1_seconds": seconds,
        "direct_seconds": direct_seconds,
        "tokens_per_s_http_c1": serial_tps,
        "tokens_per_s_direct": direct_tps,
    }


def row3_http_concurrent(b: Bench, url: str) -> Row:
    n = b.args.concurrency
    seconds, result = common.run_http(b.corpus, b.work / f"http-c{n}.jsonl", http_settings(b, url, n))
    b.shared["http_cn"] = (seconds, result.summary, b.work / f"http-c{n}.jsonl")
    c1_seconds, _ = b.shared["http_c1"]
    return {
        "title": f"HTTP --concurrency {n} vs one-at-a-time HTTP",
        "result": f"{c1_seconds / seconds:.2f}x ({_dps(len(b.docs), seconds):.2f} vs "
        f"{_dps(len(b.docs), c1_seconds):.2f} docs/s)",
        "goal": "(none; for reference)",
        "met": None,
        "speedup": c1_seconds / seconds,
        "seconds": seconds,
        "generated_tokens": result.summary.completion_tokens,
    }


def row4_langextract(b: Bench, url: str) -> Row:
    from _langextract import langextract_version, run_langextract

    title = "vllm-extract run vs LangExtract (same server, docs, types)"
    if langextract_version() is None:
        return {"title": title, "error": "langextract is not installed (.venv/bin/pip install langextract)"}
    import httpx

    served = httpx.get(url + "/v1/models", timeout=10).json()["data"][0]["id"]
    buffer = b.args.lx_char_buffer or round(b.args.chunk_tokens * b.shared.get("chars_per_token", 4.0))
    common.reset_server_cache(url)
    lx = run_langextract(
        b.docs,
        b.settings.extraction.entity_types,
        base_url=url,
        served_model=served,
        max_tokens=b.args.max_tokens,
        max_char_buffer=buffer,
        workers=b.args.concurrency,
    )
    texts = {d.id: d.text for d in b.docs}
    http_seconds, _, http_out = b.shared["http_cn"]
    direct_seconds, _ = b.shared["direct"]
    total, exact, dropped = common.exact_span_counts(common.read_output(http_out), texts)
    ours_share = exact / total if total else 0.0
    named_share = exact / (total + dropped) if total + dropped else 0.0
    lx_share = lx.exact / lx.extractions if lx.extractions else 0.0
    docs, lx_dps = len(b.docs), _dps(len(b.docs), lx.seconds)
    return {
        "title": title,
        "result": f"docs/s: ours {_dps(docs, direct_seconds):.2f} direct, {_dps(docs, http_seconds):.2f} HTTP; "
        f"LangExtract {lx_dps:.2f} (ours HTTP {lx.seconds / http_seconds:.2f}x). Exact spans: ours "
        f"{ours_share:.0%} of {total} ({named_share:.0%} of {total + dropped} named); LangExtract "
        f"{lx_share:.0%} of {lx.extractions} ({lx.omitted_chunks} chunks lost to unparsable output)",
        "goal": "(none; for reference)",
        "met": None,
        "langextract_seconds": lx.seconds,
        "langextract_extractions": lx.extractions,
        "langextract_exact": lx.exact,
        "langextract_without_interval": lx.without_interval,
        "langextract_chunks_omitted_parse_error": lx.omitted_chunks,
        "langextract_max_char_buffer": buffer,
        "ours_http_seconds": http_seconds,
        "ours_entities": total,
        "ours_exact": exact,
        "ours_ungrounded_dropped": dropped,
    }


def _cli_max_rss(corpus: Path, out: Path, url: str, b: Bench) -> tuple[float, int, float]:
    """Run the CLI against the server; (peak RSS MiB of that process, exit code, seconds)."""
    command = [
        sys.executable, "-m", "vllm_extract.cli", "run", str(corpus), "--out", str(out), "--backend", "http",
        "--server", url, "--model", "tiny", "--max-tokens", str(b.args.rss_max_tokens),
        "--chunk-tokens", str(b.args.chunk_tokens), "--quiet", "--overwrite",
    ]  # fmt: skip
    started = time.perf_counter()
    with open(b.work / "cli.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own high-water mark
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, process.returncode, time.perf_counter() - started


def row6_memory(b: Bench, url: str) -> Row:
    scale = b.args.rss_scale
    big = write_corpus(b.work / f"corpus-{scale}x.jsonl", len(b.docs) * scale, **b.corpus_kwargs())
    small_rss, small_rc, small_s = _cli_max_rss(b.corpus, b.work / "rss-1x.jsonl", url, b)
    big_rss, big_rc, big_s = _cli_max_rss(big, b.work / f"rss-{scale}x.jsonl", url, b)
    growth = big_rss / small_rss - 1
    return {
        "title": f"peak RSS of the vllm-extract process (HTTP), 1x vs {scale}x corpus",
        "result": f"{small_rss:.0f} MiB -> {big_rss:.0f} MiB ({growth:+.1%}; {len(b.docs)} -> "
        f"{len(b.docs) * scale} docs)",
        "goal": "grows < 10%",
        "met": growth < 0.10 and small_rc in (0, 1) and big_rc in (0, 1),
        "limit": f"exit codes {small_rc}/{big_rc}; the pipeline holds one window "
        f"({b.settings.extraction.window_chunks} chunks) at a time, so growth past one window's prompts "
        "and responses points at per-document state kept for the whole run",
        "rss_mib": [small_rss, big_rss],
        "exit_codes": [small_rc, big_rc],
        "seconds": [small_s, big_s],
        "max_tokens": b.args.rss_max_tokens,
    }
