"""The same extraction through the in-process engine and through a real vLLM server gives the
same records. vLLM's output on CPU depends on batch composition, so both sides send each prompt
alone here (one document at a time: ``reorder_window 1``, one chunk each; one HTTP request at a
time)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from vllm_extract import ExtractionConfig, HTTPVLLMClient, RunOptions, Settings, read_records, run_job

pytestmark = pytest.mark.slow


def test_http_and_direct_give_the_same_entities(direct_client, vllm_server, examples: Path, tmp_path: Path):
    extraction = ExtractionConfig(reorder_window=1, chunk_tokens=4000, retry_truncated=False)
    direct_config = dataclasses.replace(direct_client.config, max_completion_tokens=48)
    direct_settings = Settings(direct_config, extraction)
    http_config = dataclasses.replace(direct_config, base_url=vllm_server, concurrency=1)
    http_settings = Settings(http_config, extraction)
    inputs = [str(examples / "documents.jsonl")]

    asyncio.run(run_job(inputs, tmp_path / "direct.jsonl", direct_settings, RunOptions(), client=direct_client))

    async def over_http() -> dict:
        client = HTTPVLLMClient(http_config)
        await client.connect()
        try:
            result = await run_job(inputs, tmp_path / "http.jsonl", http_settings, RunOptions(), client=client)
        finally:
            await client.close()
        return result.stats

    stats = asyncio.run(over_http())
    direct = read_records(tmp_path / "direct.jsonl")
    http = read_records(tmp_path / "http.jsonl")
    assert stats["client_type"] == "http"
    assert stats["failed_generations"] == 0, [r.get("error") for r in http if r["status"] == "error"]
    assert [r["id"] for r in http] == [r["id"] for r in direct]
    assert all(r["chunks"] == 1 for r in direct)
    assert [r["entities"] for r in http] == [r["entities"] for r in direct]
    # Exact counts: the server's tokenizer and ours agree on every prompt, token for token.
    assert [r["usage"]["prompt_tokens"] for r in http] == [r["usage"]["prompt_tokens"] for r in direct]
