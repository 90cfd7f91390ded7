"""Quality rows: what each extraction option gives on the hand-labelled `examples/gold/` set.

Every variant runs `run_job` on the same engine (one in-process `vllm.LLM`) over the same 13 gold
documents with the same budgets, then `vllm-extract eval`'s scorer compares the output with the
gold spans. Per variant: strict and partial micro F1, entities per document, the ungrounded share
(entities the model named that are not in the text), the share of completion tokens spent on
entities already listed in the same response, generated tokens/s and documents/s.

`--mentions all` changes only alignment, not generation: it is scored by aligning the listed run's
own responses again with mentions="all" (the engine is deterministic, so a second generation would
give the same responses), and its time is the listed run's.

    .venv/bin/python bench/_quality.py [--max-tokens 128] [--variants grounded,schema]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # first: sets HF_HUB_OFFLINE etc. before vLLM loads

import vllm_extract.run.pipeline as pipeline_module
from vllm_extract import RunOptions, Settings, run_job
from vllm_extract.clients.base import VLLMClientInterface, VLLMRequest, VLLMResponse
from vllm_extract.config import EntityType
from vllm_extract.eval import evaluate, load_gold, load_predictions
from vllm_extract.extract.grammar import repeated_entity_token_share

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "examples" / "gold" / "gold.jsonl"

# Sharper per-type descriptions (the "what the model is asked" options of issue 12).
SHARP_TYPES = (
    EntityType("PERSON", "A person's name who is neither a judge nor a party, e.g. 'Lorraine Bixby'."),
    EntityType("ORGANIZATION", "A named company, agency or body that is not a party or a court, e.g. 'Acme Corp.'."),
    EntityType("COURT", "The name of a court, e.g. 'United States District Court for the District of Arizona'."),
    EntityType("JUDGE", "A judge's name, e.g. 'Miriam T. Osei' or 'OKAFOR'."),
    EntityType("PARTY", "A party to the case or contract, as named, e.g. 'Harlow Timber Company' or 'Buyer'."),
    EntityType("CASE_CITATION", "A case cited by name and reporter, e.g. 'Smith v. Jones, 512 U.S. 1 (1994)'."),
    EntityType("STATUTE", "A statute or code section, e.g. '42 U.S.C. § 1983'."),
    EntityType("DATE", "A date, e.g. 'June 30, 2023'."),
    EntityType("MONEY", "An amount of money, e.g. '$240,000'."),
    EntityType("LOCATION", "A city, state, country or address, e.g. 'Tempe, Arizona'."),
)


class Recorder(VLLMClientInterface):
    """Passes batches to the real client and keeps every response (for the repetition share)."""

    def __init__(self, inner: VLLMClientInterface) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.client_type = inner.client_type
        self.engine_info = inner.engine_info  # the dtype and step budget the run reports
        self.responses: list[VLLMResponse] = []
        self.model_path = getattr(inner, "model_path", None)

    async def connect(self) -> bool:
        return True

    async def generate_batch(self, requests: list[VLLMRequest], on_response: Any = None) -> list[VLLMResponse]:
        responses = await self.inner.generate_batch(requests, on_response)
        self.responses.extend(responses)
        return responses

    def get_tokenizer(self) -> Any:
        return self.inner.get_tokenizer()

    @property
    def max_model_len(self) -> int:
        return self.inner.max_model_len


# name -> (what the table says, the extraction settings changed)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "grounded": ("--decoding grounded", {"decoding": "grounded"}),
    "grounded-all": ("--decoding grounded --mentions all", {"decoding": "grounded", "mentions": "all"}),
    "grounded-8": ("grounded, at most 8 entities per chunk", {"decoding": "grounded", "max_entities_per_chunk": 8}),
    "grounded-sharp": ("grounded, sharper type descriptions", {"decoding": "grounded", "entity_types": SHARP_TYPES}),
    "grounded-example": ("grounded, a worked example in the instructions", {"decoding": "grounded", "example": True}),
    "schema": ("--decoding schema", {"decoding": "schema"}),
    # Truncation retries on (the default): 0.1 retried every cut answer with twice the budget;
    # now an answer cut while repeating itself is not retried (pipeline.LOOPING_SHARE).
    "retry-every-cut": (
        "grounded, every cut answer retried (before)",
        {"decoding": "grounded", "retry_truncated": True, "looping_share": 2.0},
    ),
    "retry-not-loops": (
        "grounded, answers cut while looping not retried (after, the default)",
        {"decoding": "grounded", "retry_truncated": True},
    ),
    "schema-all": ("--decoding schema --mentions all", {"decoding": "schema", "mentions": "all"}),
}


@dataclasses.dataclass
class _Run:
    seconds: float
    result: Any
    recorder: Recorder


def quality_rows(client: VLLMClientInterface, base: Settings, work: Path, names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per variant name (keys of VARIANTS) on the gold set, with the same engine."""
    gold = load_gold(GOLD)
    tokenizer = client.get_tokenizer()
    rows = []
    generated: dict[str, _Run] = {}  # generation settings -> the run that generated with them
    for number, name in enumerate(names):
        label, changes = VARIANTS[name][0], dict(VARIANTS[name][1])
        mentions = changes.pop("mentions", "listed")
        example = changes.pop("example", False)
        _use_example(example)
        looping_share = changes.pop("looping_share", 0.5)
        pipeline_module.LOOPING_SHARE = looping_share
        key = repr((example, looping_share, sorted(changes.items())))  # what changes generation
        settings = Settings(base.vllm, dataclasses.replace(base.extraction, mentions=mentions, **changes))
        out = work / f"quality-{number}.jsonl"
        run = generated.get(key)
        if run is None:
            recorder = Recorder(client)
            if hasattr(client, "llm"):
                client.llm.reset_prefix_cache()
            started = time.perf_counter()
            result = asyncio.run(run_job([str(GOLD)], out, settings, RunOptions(overwrite=True), client=recorder))
            run = generated[key] = _Run(time.perf_counter() - started, result, recorder)
            with open(out.with_suffix(".responses.jsonl"), "wb") as dump:  # for reading what the model wrote
                for r in recorder.responses:
                    line = {"id": r.request_id, "finish": r.finish_reason, "content": r.content}
                    dump.write(orjson.dumps(line) + b"\n")
        else:  # same generation, aligned again (see the module docstring)
            replay = Replay(run.recorder)
            result = asyncio.run(run_job([str(GOLD)], out, settings, RunOptions(overwrite=True), client=replay))
        predictions = load_predictions(out)
        scored = evaluate(gold, predictions, expected_types=settings.extraction.type_names)
        summary = result.summary
        written = sum(len(p.entities) for p in predictions.values())
        named = written + summary.ungrounded_dropped
        responses = [r for r in run.recorder.responses if r.success]
        tokens = [r.completion_tokens for r in responses]
        shares = [repeated_entity_token_share(r.content, lambda s: len(tokenizer.encode(s))) for r in responses]
        repeated = sum(s * t for s, t in zip(shares, tokens, strict=True)) / max(sum(tokens), 1)
        seconds = run.seconds
        rows.append(
            {
                "variant": label,
                "strict_f1": scored.micro["strict"].f1,
                "partial_f1": scored.micro["partial"].f1,
                "strict_p": scored.micro["strict"].precision,
                "strict_r": scored.micro["strict"].recall,
                "entities_per_doc": written / max(len(gold), 1),
                "ungrounded_share": summary.ungrounded_dropped / named if named else 0.0,
                "repeated_token_share": repeated,
                "generated_tokens_per_s": run.result.summary.completion_tokens / seconds,
                "docs_per_s": summary.documents / seconds,
                "entities_per_s": written / seconds,
                "seconds": seconds,
                "truncated_chunks": summary.truncated_chunks,
            }
        )
        print(f"quality: {name}: {rows[-1]}", flush=True)
    return rows


# The worked-example option: its names are in no document, and grounded decoding only lets the
# model write spans of the chunk it reads, so they cannot be copied into an answer.
EXAMPLE_TEXT = "On May 2, 2024, Judge Ann Lee of the Ninth Circuit fined Acme Corp. $5,000 in Reno."
EXAMPLE_ENTITIES = (
    ("DATE", "May 2, 2024"),
    ("JUDGE", "Ann Lee"),
    ("COURT", "Ninth Circuit"),
    ("ORGANIZATION", "Acme Corp."),
    ("MONEY", "$5,000"),
    ("LOCATION", "Reno"),
)


def _use_example(example: bool) -> None:
    """Build the plan's instructions with or without a worked example (an experiment switch)."""
    import json

    import vllm_extract.run.plan as plan_module
    from vllm_extract.extract.prompts import build_instructions

    def with_example(types: Any, examples: Any = ()) -> str:
        names = {t.name for t in types}
        shown = [{"type": k, "text": v} for k, v in EXAMPLE_ENTITIES if k in names]
        answer = json.dumps({"entities": shown}, separators=(",", ":"))
        lines = [build_instructions(types), "Example document:", EXAMPLE_TEXT, "Example answer:", answer]
        return "\n".join(lines)

    plan_module.build_instructions = with_example if example else build_instructions  # type: ignore[assignment]


class Replay(Recorder):
    """Answers each request with the recorded response of the same request id (no engine)."""

    def __init__(self, recorded: Recorder) -> None:
        super().__init__(recorded.inner)
        self._by_id = {r.request_id: r for r in recorded.responses}

    async def generate_batch(self, requests: list[VLLMRequest], on_response: Any = None) -> list[VLLMResponse]:
        return [self._by_id[r.request_id] for r in requests]


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| variant | strict F1 | partial F1 | strict P / R | entities/doc | ungrounded | repeated-entity tokens "
        "| gen tok/s | docs/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['strict_f1']:.3f} | {r['partial_f1']:.3f} | {r['strict_p']:.3f} / "
            f"{r['strict_r']:.3f} | {r['entities_per_doc']:.1f} | {r['ungrounded_share']:.1%} | "
            f"{r['repeated_token_share']:.1%} | {r['generated_tokens_per_s']:.0f} | {r['docs_per_s']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--keep-ungrounded", action="store_true", help="keep what alignment drops (debugging)")
    parser.add_argument("--chunk-tokens", type=int, default=2000)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--work", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    from vllm_extract import DirectVLLMClient
    from vllm_extract.run.plan import plan_for_local_model

    args.work.mkdir(parents=True, exist_ok=True)
    settings = common.make_settings(args.max_tokens, args.chunk_tokens)
    if args.keep_ungrounded:
        settings = Settings(settings.vllm, dataclasses.replace(settings.extraction, keep_ungrounded=True))
    plan = plan_for_local_model(settings)
    client = DirectVLLMClient(plan.vllm, model_path=plan.model.path, max_model_len=plan.max_model_len)
    asyncio.run(client.connect())
    try:
        rows = quality_rows(client, settings, args.work, [v.strip() for v in args.variants.split(",") if v.strip()])
    finally:
        asyncio.run(client.close())
    print(table(rows))


if __name__ == "__main__":
    main()
