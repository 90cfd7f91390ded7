"""Pipeline rules that need no engine (the engine tests are in test_pipeline.py)."""

from __future__ import annotations

import json

from vllm_extract.clients.followups import looping as _looping
from vllm_extract.output.records import text_sha256


def answer(*texts: str) -> str:
    return json.dumps({"entities": [{"type": "PERSON", "text": t} for t in texts]}, separators=(",", ":"))


def test_a_cut_answer_that_repeats_itself_is_looping() -> None:
    """The tiny model lists one span until max_tokens; retrying it with twice the budget buys
    twice the repeats, so such an answer is not retried (the share is measured in characters)."""
    assert _looping(answer("Acme", *["Nadia Farouk"] * 6)[:-3])  # cut mid-way, as at max_tokens
    assert not _looping(answer("Acme", "Beta LLC", "Nadia Farouk", "Acme"))  # one repeat in four
    assert not _looping("")


def test_text_hash_is_of_the_utf8_text() -> None:
    import hashlib

    assert text_sha256("a") == "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
    assert text_sha256("José") == hashlib.sha256("José".encode()).hexdigest()
    assert len(text_sha256("memo_\udcff")) == 64  # a lone surrogate (non-UTF-8 input) still hashes


def test_an_answer_with_no_entities_list_is_an_error_that_reuse_retries(tmp_path, misbehaving_server) -> None:
    """A model answer that is not JSON, or JSON with no ``entities`` list, used to give an ``ok``
    record with no entities (exit 0), which ``--reuse`` then copied for good. It is an
    ``unparsable_response`` error now; ``{"entities": []}`` and a cut answer whose list began
    stay ``ok``. The whole path over HTTP: a scripted server, the pipeline, the writer, reuse."""
    import asyncio

    import orjson

    from vllm_extract.cli.exit_codes import for_outcome
    from vllm_extract.config import Settings, VLLMConfig
    from vllm_extract.output import read_records
    from vllm_extract.run.runner import RunOptions, run_job

    server = misbehaving_server(tokenize=True)
    server.answers = {
        "Prose": "I cannot help with that.",
        "Other": '{"result": "none found"}',
        "Nothing": '{"entities": []}',
        "Cutoff": ('{"entities": [{"type": "PERSON", "text": "Cutoff"}, {"ty', "length"),
        "Rambling": ("Sure! Let me think about the people named in this", "length"),
    }
    texts = {
        "prose": "Prose from Ada.",
        "other": "Other JSON for Ada.",
        "nothing": "Nothing named here.",
        "ada": "Ada Lovelace wrote notes.",
        "cut": "Cutoff wrote to Ada.",
        "rambling": "Rambling about Ada.",
    }
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"id": k, "text": v}) + b"\n" for k, v in texts.items()))
    settings = Settings(VLLMConfig(model="test-model", base_url=server.url, max_completion_tokens=16))

    def run(out: str, **options: object):
        return asyncio.run(run_job([str(src)], tmp_path / out, settings, RunOptions(backend="http", **options)))

    result = run("first.jsonl")
    records = {r["id"]: r for r in read_records(tmp_path / "first.jsonl")}
    kinds = {k: r.get("error", {}).get("kind", r["status"]) for k, r in records.items()}
    assert kinds == {
        "prose": "unparsable_response",
        "other": "unparsable_response",
        "nothing": "ok",
        "ada": "ok",
        "cut": "ok",
        "rambling": "unparsable_response",
    }
    assert for_outcome(result.outcome) == 1 and result.summary.errors_by_kind["unparsable_response"] == 3
    assert "I cannot help with that." in records["prose"]["error"]["message"]
    assert records["nothing"]["entities"] == [] and records["cut"]["truncated_chunks"] == [0]
    assert [e["text"] for e in records["cut"]["entities"]] == ["Cutoff"]  # salvaged from the cut answer
    assert records["rambling"]["truncated_chunks"] == [0]
    # --resume keeps error records as it keeps every generation error (the exit code still says 1);
    # --reuse copies only ok records: the three are asked again, the others copied.
    assert for_outcome(run("first.jsonl", resume=True).outcome) == 1
    asked = server.chat_requests
    server.answers = {}  # the model behaves now
    again = run("second.jsonl", reuse=[tmp_path / "first.jsonl"])
    assert for_outcome(again.outcome) == 0
    second = {r["id"]: r for r in read_records(tmp_path / "second.jsonl")}
    assert {k for k, r in second.items() if not r.get("reused")} == {"prose", "other", "rambling"}
    assert server.chat_requests - asked == 3


def test_per_type_questions_and_a_second_pass_merge_by_span(tmp_path, misbehaving_server) -> None:
    """``--strategy per-type --passes 2`` over HTTP, with a scripted server: two questions per chunk
    (PERSON, ORGANIZATION), each answered twice (the second pass sees the first answer). Every
    answer's entities join the chunk's, merged by span; an answer's entity of a type its question
    did not ask about is dropped (the grammar forbids it on a real engine); the record counts one
    chunk, and the run four requests."""
    import asyncio

    import orjson

    from vllm_extract.config import ExtractionConfig, Settings, VLLMConfig, parse_entity_types
    from vllm_extract.events import ChunkDone
    from vllm_extract.output import read_records
    from vllm_extract.run.runner import RunOptions, run_job

    def entities(*pairs: tuple[str, str]) -> str:
        return json.dumps({"entities": [{"type": t, "text": x} for t, x in pairs]})

    server = misbehaving_server()
    server.answers = {
        "not listed yet": entities(("PERSON", "Grace Hopper"), ("PERSON", "Ada Lovelace")),  # the second pass
        "type PERSON": entities(("PERSON", "Ada Lovelace"), ("ORGANIZATION", "Acme Corp")),  # ORG not asked
        "type ORGANIZATION": entities(("ORGANIZATION", "Acme Corp")),
    }
    src = tmp_path / "in.jsonl"
    text = "Ada Lovelace and Grace Hopper met at Acme Corp."
    src.write_bytes(orjson.dumps({"id": "d", "text": text}) + b"\n")
    extraction = ExtractionConfig(
        entity_types=parse_entity_types("PERSON,ORGANIZATION"), strategy="per-type", passes=2, decoding="schema"
    )
    url = server.url + "/v1"  # the OpenAI base-URL form is the same server
    settings = Settings(VLLMConfig(model="test-model", base_url=url, max_completion_tokens=16), extraction)
    events: list[object] = []
    options = RunOptions(backend="http", subscribers=[events.append])
    result = asyncio.run(run_job([str(src)], tmp_path / "out.jsonl", settings, options))
    (record,) = read_records(tmp_path / "out.jsonl")
    answered = [e.chunk_done for e in events if isinstance(e, ChunkDone)]
    assert answered == [False, True]  # two questions about one chunk: the chunk is done at the second
    found = sorted((e["type"], e["text"], e["start"]) for e in record["entities"])
    assert found == [("ORGANIZATION", "Acme Corp", 37), ("PERSON", "Ada Lovelace", 0), ("PERSON", "Grace Hopper", 17)]
    assert record["chunks"] == 1 and result.summary.chunks == 1
    assert server.chat_requests == 4 and result.summary.requests == 4
    questions = [b["messages"][2]["content"] for b in server.bodies if len(b["messages"]) == 3]
    assert len(questions) == 2 and all(q.startswith("List only the entities of type") for q in questions)
    seconds = [b["messages"] for b in server.bodies if len(b["messages"]) == 5]
    assert len(seconds) == 2  # system, document, question, the first answer, the follow-up
    assert all(m[3]["role"] == "assistant" and m[4]["content"].startswith("List the entities") for m in seconds)
    schemas = {
        tuple(b["structured_outputs"]["json"]["properties"]["entities"]["items"]["properties"]["type"]["enum"])
        for b in server.bodies
        if "structured_outputs" in b
    }
    assert schemas == {("PERSON",), ("ORGANIZATION",)}  # each question's schema allows only its types
