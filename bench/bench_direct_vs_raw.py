"""`vllm-extract run` against raw `vllm.LLM.chat` on the identical prompts (the ceiling).

One process, one engine: builds a corpus, runs the full extraction (read, chunk, count, batch,
parse, ground, write) and raw `LLM.chat` over exactly the prompts and sampling parameters the
extraction sent, alternating A/B rounds, and prints the throughput ratio (goal >= 0.97).

    .venv/bin/python bench/bench_direct_vs_raw.py --docs 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--chunk-tokens", type=int, default=1500)
    args = parser.parse_args()

    from corpus import write_corpus

    from vllm_extract import DirectVLLMClient, ExtractionConfig, RunOptions, Settings, VLLMConfig, run_job
    from vllm_extract.documents import Document, iter_documents
    from vllm_extract.pipeline import ExtractionPipeline

    work = Path(tempfile.mkdtemp(prefix="bench-raw-"))
    corpus = write_corpus(work / "corpus.jsonl", args.docs)
    config = VLLMConfig(model="tiny", max_completion_tokens=args.max_tokens, kv_cache_memory_bytes=2 << 30)
    # Retries off: both sides do exactly the same generation work.
    settings = Settings(config, ExtractionConfig(chunk_tokens=args.chunk_tokens, retry_truncated=False))
    client = DirectVLLMClient(config, preflight=False)
    asyncio.run(client.connect())
    llm = client.llm

    pipeline = ExtractionPipeline(client, settings)
    prepared = [p for d in iter_documents([str(corpus)]) if isinstance(d, Document) for p in pipeline.prepare(d)]
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    params = [
        SamplingParams(
            temperature=0.0,
            seed=42,
            max_tokens=pipeline.estimator.completion_budget(len(p.prompt_ids), args.max_tokens),
            structured_outputs=StructuredOutputsParams(json=pipeline.schema),
        )
        for p in prepared
    ]
    conversations = [p.messages for p in prepared]
    print(
        f"corpus: {args.docs} documents, {len(prepared)} chunks, "
        f"{sum(len(p.prompt_ids) for p in prepared)} prompt tokens",
        flush=True,
    )

    raw_times, ours_times, raw_tokens, ours_tokens = [], [], 0, 0
    for round_no in range(args.rounds):
        started = time.perf_counter()
        outputs = llm.chat(conversations, params, use_tqdm=False)
        raw_times.append(time.perf_counter() - started)
        raw_tokens = sum(len(o.outputs[0].token_ids) for o in outputs)

        out = work / f"ours-{round_no}.jsonl"
        started = time.perf_counter()
        result = asyncio.run(run_job([str(corpus)], out, settings, RunOptions(), client=client))
        ours_times.append(time.perf_counter() - started)
        ours_tokens = result.summary.completion_tokens
        print(f"round {round_no}: raw {raw_times[-1]:.2f}s  vllm-extract {ours_times[-1]:.2f}s", flush=True)

    raw_t, ours_t = min(raw_times), min(ours_times)
    print()
    print("| path | documents/s | generated tokens/s | time (s) |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| raw LLM.chat | {args.docs / raw_t:.2f} | {raw_tokens / raw_t:.1f} | {raw_t:.2f} |")
    print(f"| vllm-extract run | {args.docs / ours_t:.2f} | {ours_tokens / ours_t:.1f} | {ours_t:.2f} |")
    print(f"\nthroughput ratio vllm-extract / raw = {raw_t / ours_t:.3f} (goal >= 0.97)")
    print(f"generated tokens: raw {raw_tokens}, vllm-extract {ours_tokens} (identical prompts and sampling)")
    asyncio.run(client.close())


if __name__ == "__main__":
    main()
