"""How the model is asked, on the engine (issue 22): per-type questions share their chunk's prefix
in vLLM's prefix cache, a question's answer holds only its types, a second pass runs and adds to the
first, and worked examples never become entities of the document.

These tests use the session's second engine (``conftest.cached_client``: prefix caching on,
32-token completion budget), shared with ``test_engine_faults``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from recording_client import RecordingClient

from vllm_extract.config import ExtractionConfig, Settings, parse_entity_types
from vllm_extract.extract.parsing import parse_response
from vllm_extract.output import read_records
from vllm_extract.run.runner import RunOptions, run_job

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NEWS = ROOT / "examples" / "docs" / "news-item.md"
TYPES = parse_entity_types("PERSON,ORGANIZATION,DATE")


def run(client: Any, inputs: list[str], out: Path, **extraction: Any) -> Any:
    settings = Settings(client.config, ExtractionConfig(entity_types=TYPES, **extraction))
    recorder = RecordingClient(client)
    result = asyncio.run(run_job(inputs, out, settings, RunOptions(), client=recorder))
    return recorder, result, read_records(out)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_per_type_questions_share_their_chunk_prefix_and_answer_only_their_types(cached_client, tmp_path):
    assert asyncio.run(cached_client.reset_prefix_cache())
    recorder, result, records = run(cached_client, [str(NEWS)], tmp_path / "out.jsonl", strategy="per-type")
    (record,) = records
    assert record["status"] == "ok" and record["chunks"] == 1
    (sent,) = recorder.batches  # one document, one chunk: its three questions in one submission
    assert [r.request_id.rsplit("/", 1)[1] for r in sent] == ["0", "1", "2"]
    block = int(cached_client.engine_info["block_size"])
    tokenizer = cached_client.get_tokenizer()
    # the instructions and the chunk: the two first messages' ids, less the assistant opening
    shared = common_prefix(tokenizer.encode_chat(sent[0].messages[:2]), sent[1].prompt_token_ids or [])
    assert shared >= block  # else the test could not fail
    answers = {r.response.request_id: r.response for r in recorder.results}
    for position, request in enumerate(sent):
        response = answers[request.request_id]
        assert response.success, response.error
        if position:  # every question after the first is served the shared blocks from the cache
            assert response.cached_tokens >= shared // block * block, (position, response.cached_tokens, shared)
        asked = {TYPES[position].name}
        found = {e["type"] for e in _entities(response.content)}
        assert found <= asked, (request.request_id, response.content)
    assert result.summary.cached_tokens >= 2 * (shared // block * block)
    assert result.summary.as_dict()["cached_prompt_share"] > 0.5


def _entities(content: str) -> list[dict[str, Any]]:
    """An answer's entities as the pipeline reads them (a cut answer: the items before the cut)."""
    return [{"type": e.type, "text": e.text} for e in parse_response(content, [t.name for t in TYPES]).entities]


def test_a_second_pass_runs_after_a_complete_answer_and_adds_to_it(cached_client, tmp_path):
    # one entity per answer at most: the grammar closes the list, so an answer ends within 32 tokens
    recorder, result, records = run(
        cached_client, [str(NEWS)], tmp_path / "out.jsonl", passes=2, max_entities_per_chunk=1
    )
    (record,) = records
    (answer,) = [r.response for r in recorder.results]
    assert not answer.truncated and len(answer.passes) == 1, answer
    # the first answer (retried once if it was cut) and the second pass, all counted
    assert result.summary.requests == answer.attempts >= 2
    first = {(e["type"], e["text"].strip()) for e in _entities(answer.content)}  # alignment trims spans
    later = {(e["type"], e["text"].strip()) for e in _entities(answer.passes[0].content)}
    kept = {(e["type"], e["text"]) for e in record["entities"]}
    assert first | later == kept  # the second pass's entities join the first's, merged by span


@pytest.mark.parametrize("decoding", ["grounded", "schema"])
def test_worked_examples_never_become_entities_of_the_document(cached_client, tmp_path, decoding):
    """Example names absent from the document: grounded decoding cannot write them; with the JSON
    schema alone the model may copy them, and alignment must drop them as ungrounded."""
    example = "Zebulon Quartermaine of Xylophage Holdings signed on Octember 3."
    names = ["Zebulon Quartermaine", "Xylophage Holdings", "Octember 3"]
    gold = tmp_path / "examples.jsonl"
    spans = [
        {"type": t, "start": example.index(n), "end": example.index(n) + len(n)}
        for t, n in zip(["PERSON", "ORGANIZATION", "DATE"], names, strict=True)
    ]
    gold.write_bytes(orjson.dumps({"id": "ex", "text": example, "entities": spans}) + b"\n")
    text = NEWS.read_text(encoding="utf-8")
    assert not any(n in text for n in names)
    recorder, _, records = run(
        cached_client, [str(NEWS)], tmp_path / "out.jsonl", examples_file=str(gold), decoding=decoding
    )
    (sent,) = recorder.batches
    assert "Zebulon Quartermaine" in sent[0].messages[0]["content"]  # the example reached the prompt
    (record,) = records
    assert not [e for e in record["entities"] if any(n in e["text"] for n in names)]
    copied = sum(n in r.response.content for r in recorder.results for n in names)
    if decoding == "grounded":
        assert copied == 0  # the grammar allows only the chunk's own text
    else:
        assert record["ungrounded"] >= min(copied, 1)  # a copied name is counted, never kept
