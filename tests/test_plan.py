"""The run plan: model resolution, budgets in force, fingerprint, prompts built from text only.

No engine: the plan is what `vllm-extract plan` and `run` decide before anything loads.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from vllm_extract.cli import app
from vllm_extract.cli.exit_codes import for_error
from vllm_extract.config import ExtractionConfig, Settings, VLLMConfig
from vllm_extract.exceptions import BudgetError, ConfigurationError
from vllm_extract.readers import Document, iter_documents
from vllm_extract.run.budgets import PROMPT_SLACK_TOKENS
from vllm_extract.run.dry_run import plan_job
from vllm_extract.run.pipeline import ExtractionPipeline
from vllm_extract.run.plan import batching_parts, build_plan, plan_for_local_model, resolve_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny() -> str:
    from vllm_extract.engine.models import prepare_tiny_model

    return str(prepare_tiny_model().path)


def settings(model: str, **vllm: object) -> Settings:
    return Settings(VLLMConfig(model=model, **vllm))  # type: ignore[arg-type]


def test_resolve_model_is_the_one_place_and_reads_the_real_context(tiny: str) -> None:
    model = resolve_model("tiny")
    assert model.path == tiny and model.local and model.context == 8192
    with pytest.raises(ConfigurationError, match="does not exist"):
        resolve_model("./no/such/model-folder")
    # A served model need not be here: without `required` the name is kept for the server.
    remote = resolve_model("./no/such/model-folder", required=False)
    assert remote.path == "./no/such/model-folder" and not remote.local and remote.context is None


def test_plan_fits_the_budgets_to_the_model(tiny: str) -> None:
    plan = plan_for_local_model(settings(tiny, max_completion_tokens=256))
    # The tiny model's 8192 caps the configured 32768 and 28000: the report shows these values.
    assert (plan.max_model_len, plan.vllm.max_prompt_tokens) == (8192, 8191)
    assert plan.chunk_tokens == min(12000, 8192 - 256 - plan.overhead_tokens - PROMPT_SLACK_TOKENS)
    assert plan.settings.as_dict()["max_model_len"] == 8192
    assert plan.completion_budget(8000) == 192  # shrinks so prompt + completion fits
    assert plan.token_ids and plan.decoding == "grounded"


def test_completion_budget_shrinks_instead_of_failing_every_document(tiny: str) -> None:
    """Issue 13: `plan --max-tokens 4096 --max-model-len 4096` failed every document."""
    result = plan_job([str(ROOT / "examples" / "docs")], settings(tiny, max_completion_tokens=4096, max_model_len=4096))
    assert result.bad_inputs == [] and result.documents >= 4
    assert result.max_model_len == 4096 and result.max_completion_tokens < 4096
    assert result.largest_prompt_tokens + result.max_completion_tokens <= 4096


def test_budgets_that_leave_no_room_are_a_configuration_error_before_loading(tiny: str) -> None:
    with pytest.raises(BudgetError, match="no room for document text") as info:
        plan_for_local_model(settings(tiny, max_model_len=200))
    assert isinstance(info.value, ConfigurationError) and for_error(info.value) == 2
    runner = CliRunner()
    result = runner.invoke(app, ["plan", str(ROOT / "examples" / "docs"), "--model", tiny, "--max-model-len", "200"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_fingerprint_changes_with_what_changes_results(tiny: str) -> None:
    base = plan_for_local_model(settings(tiny))
    same = plan_for_local_model(settings(tiny))
    assert base.fingerprint == same.fingerprint and len(base.fingerprint) == 16
    changed = [
        Settings(base.settings.vllm, dataclasses.replace(base.extraction, decoding="schema")),
        Settings(base.settings.vllm, ExtractionConfig(entity_types=base.extraction.entity_types[:3])),
        Settings(base.settings.vllm, dataclasses.replace(base.extraction, chunk_overlap=0.2)),
        Settings(dataclasses.replace(base.settings.vllm, max_completion_tokens=64), base.extraction),
        # issue 20: prompt splits, the completion budget's room and the prompt form change results
        Settings(dataclasses.replace(base.settings.vllm, max_prompt_tokens=4000), base.extraction),
        Settings(dataclasses.replace(base.settings.vllm, max_model_len=6000), base.extraction),
        Settings(dataclasses.replace(base.settings.vllm, batch_invariant=True), base.extraction),
    ]
    prints = {build_plan(s, base.model, base.tokenizer).fingerprint for s in changed}
    as_messages = build_plan(base.settings, base.model, base.tokenizer, token_ids=False).fingerprint
    prints.add(as_messages)
    assert base.fingerprint not in prints and len(prints) == len(changed) + 1
    # Settings that shape batches or transport only keep the fingerprint: they are saved in
    # OUT.run.json (batch.* keys), where --resume refuses a change, and --reuse/merge accept one.
    quiet = [
        Settings(dataclasses.replace(base.settings.vllm, concurrency=3), base.extraction),
        Settings(dataclasses.replace(base.settings.vllm, max_num_seqs=8), base.extraction),
        Settings(base.settings.vllm, dataclasses.replace(base.extraction, reorder_window=4, queue_requests=9)),
    ]
    for s in quiet:
        assert build_plan(s, base.model, base.tokenizer).fingerprint == base.fingerprint
    batching = batching_parts(build_plan(quiet[1], base.model, base.tokenizer))
    assert batching["batch.max_num_seqs"] == 8 and batching_parts(base)["batch.max_num_seqs"] == 256


def test_gold_entities_never_reach_a_prompt(tiny: str, tmp_path: Path) -> None:
    """Issue 11: `run` reads gold JSONL as input; only `text` goes to the model."""
    gold = ROOT / "examples" / "gold" / "gold.jsonl"
    plan = plan_for_local_model(settings(tiny))
    pipeline = ExtractionPipeline(None, plan)
    docs = [d for d in iter_documents([str(gold)]) if isinstance(d, Document)]
    raw = [orjson.loads(line) for line in gold.read_bytes().splitlines()]
    assert [d.id for d in docs] == [r["id"] for r in raw]
    for doc, source in zip(docs, raw, strict=True):
        assert doc.metadata["entities"] == source["entities"]  # rides along as metadata
        for prepared in pipeline.prepare(doc):
            system, user = prepared.messages
            assert system["content"] == plan.instructions
            assert user["content"] == "Document:\n" + doc.text[prepared.chunk.start : prepared.chunk.end]
            assert '"start"' not in user["content"] and '"entities"' not in user["content"]
            assert prepared.prompt_ids == plan.tokenizer.encode_chat(prepared.messages)
