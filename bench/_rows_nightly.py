"""bench/run_all.py rows for nightly jobs (one in-process engine):

10 an incremental rerun (`--reuse`) over a corpus with 1% of documents changed, against a full run
11 reading a 200-page PDF: pages per second, and reading's share of the whole run over it
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import _common as common
import orjson
from _common import Bench, Row
from corpus import write_corpus

from vllm_extract import RunOptions, Settings, run_job
from vllm_extract.clients.base import VLLMClientInterface

PDF_MAX_TOKENS = 16


class _Counting(VLLMClientInterface):
    """Passes the run's stream to the real client and counts the requests sent."""

    def __init__(self, inner: VLLMClientInterface) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.client_type = inner.client_type
        self.engine_info = inner.engine_info  # the dtype and step budget the run reports
        self.model_path = getattr(inner, "model_path", None)
        self.sent: list[str] = []

    async def connect(self) -> bool:
        return True

    def open_stream(self, **kwargs: Any) -> Any:
        stream = self.inner.open_stream(**kwargs)
        submit = stream.submit

        async def counted(items: Any) -> None:
            self.sent += [i.request.request_id for i in items]
            await submit(items)

        stream.submit = counted  # type: ignore[method-assign]
        return stream

    def get_tokenizer(self) -> Any:
        return self.inner.get_tokenizer()

    @property
    def max_model_len(self) -> int:
        return self.inner.max_model_len


def _timed(
    inputs: list[str], out: Path, settings: Settings, client: VLLMClientInterface, **options: Any
) -> tuple[float, Any]:
    common.reset_cache(client)
    started = time.perf_counter()
    result = asyncio.run(run_job(inputs, out, settings, RunOptions(overwrite=True, **options), client=client))
    return time.perf_counter() - started, result


def row10_incremental(b: Bench, client: Any, documents: int = 100) -> Row:
    corpus = write_corpus(b.work / "nightly.jsonl", documents, seed=4321, long_every=0, long_paragraphs=0)
    full_seconds, _ = _timed([str(corpus)], b.work / "nightly-full.jsonl", b.settings, client)
    docs = [orjson.loads(line) for line in corpus.read_bytes().splitlines()]
    changed = max(1, documents // 100)
    for doc in docs[:changed]:
        doc["text"] += " A later amendment was filed by Halvorsen Polymer Works, Inc."
    corpus.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    counting = _Counting(client)
    rerun_seconds, result = _timed(
        [str(corpus)], b.work / "nightly-rerun.jsonl", b.settings, counting, reuse=[b.work / "nightly-full.jsonl"]
    )
    sent_docs = sorted({r.split("#")[0] for r in counting.sent})
    ratio = full_seconds / rerun_seconds
    return {
        "title": f"incremental rerun (--reuse), {changed} of {documents} documents changed, vs a full run",
        "result": f"{ratio:.1f}x faster ({rerun_seconds:.1f}s vs {full_seconds:.1f}s); requests sent for "
        f"{len(sent_docs)} document(s), {result.summary.reused} reused",
        "goal": "only the changed documents are sent",
        "met": sent_docs == sorted(d["id"] for d in docs[:changed]) and result.summary.reused == documents - changed,
        "full_seconds": full_seconds,
        "rerun_seconds": rerun_seconds,
        "requests_sent": len(counting.sent),
    }


def row11_pdf_reading(b: Bench, client: Any, pages: int = 200) -> Row:
    from _reading import write_pdf

    from vllm_extract.readers import iter_documents

    pdf = write_pdf(b.work / "long.pdf", pages)
    started = time.perf_counter()
    (document,) = list(iter_documents([str(pdf)]))
    read_seconds = time.perf_counter() - started
    # The tiny model's own defaults for chunk size, and a small completion budget: the share read
    # here is an upper bound (a real model spends far longer per chunk).
    settings = Settings(
        dataclasses.replace(b.settings.vllm, max_completion_tokens=PDF_MAX_TOKENS),
        dataclasses.replace(b.settings.extraction, chunk_tokens=2000),
    )
    run_seconds, result = _timed([str(pdf)], b.work / "pdf-out.jsonl", settings, client)
    share = read_seconds / run_seconds
    return {
        "title": f"reading a {pages}-page PDF (pypdfium2), share of the run over it",
        "result": f"{pages / read_seconds:.0f} pages/s ({read_seconds:.2f}s); {share:.1%} of the run "
        f"({run_seconds:.1f}s, {result.summary.chunks} chunks of 2000 tokens, max_tokens {PDF_MAX_TOKENS})",
        "goal": "(none; for reference)",
        "met": None,
        "characters": len(getattr(document, "text", "")),
        "read_seconds": read_seconds,
        "run_seconds": run_seconds,
    }
