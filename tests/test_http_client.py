"""HTTPVLLMClient against a scriptable misbehaving server, and (slow) against a real vLLM server."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import string
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from misbehaving_server import MisbehavingServer, first_capitalized

from vllm_extract.clients.base import VLLMRequest, VLLMResponse
from vllm_extract.clients.http import HTTPVLLMClient, _choose_model
from vllm_extract.clients.remote_tokenizer import RemoteTokenizer
from vllm_extract.config import VLLMConfig
from vllm_extract.exceptions import ConfigurationError, ConnectionError
from vllm_extract.extract.tokens import load_tokenizer

T = TypeVar("T")
Factory = Callable[..., MisbehavingServer]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_client(*urls: str, **settings: Any) -> HTTPVLLMClient:
    settings.setdefault("max_retries", 3)
    settings.setdefault("http_timeout", 5.0)
    config = VLLMConfig(base_url=urls[0] if urls else None, servers=list(urls[1:]), **settings)
    client = HTTPVLLMClient(config)
    client.backoff_base = 0.01  # keep retries fast; the policy itself is unchanged
    client.backoff_cap = 0.05
    return client


def requests_for(names: list[str], **kwargs: Any) -> list[VLLMRequest]:
    return [
        VLLMRequest(messages=[{"role": "user", "content": f"{name} signed the lease."}], **kwargs) for name in names
    ]


def names(n: int) -> list[str]:
    """n distinct capitalized words without digits (the server echoes the first one)."""
    letters = string.ascii_lowercase
    return [f"N{letters[i // 26]}{letters[i % 26]}" for i in range(n)]


async def generate(client: HTTPVLLMClient, reqs: list[VLLMRequest]) -> list[VLLMResponse]:
    try:
        await client.connect()
        return await client.generate_batch(reqs)
    finally:
        await client.close()


def entity_text(response: VLLMResponse) -> str:
    return str(json.loads(response.content)["entities"][0]["text"])


# -- connect ---------------------------------------------------------------------------------------
def test_connect_discovers_model_and_context(misbehaving_server: Factory) -> None:
    server = misbehaving_server(model="served-model", max_model_len=4096)
    client = make_client(server.url, max_model_len=32768)
    assert run(client.connect()) is True
    assert client.model_name == "served-model"
    assert client.max_model_len == 4096
    run(client.close())


def test_connect_without_server_lists_urls(dead_server_url: str) -> None:
    other = dead_server_url.rsplit(":", 1)[0] + ":1"
    client = make_client(dead_server_url, other)
    with pytest.raises(ConnectionError) as info:
        run(client.connect())
    assert dead_server_url in str(info.value) and other in str(info.value)
    assert "no vLLM server answered" in str(info.value)
    assert info.value.base_url == dead_server_url


def test_connect_unhealthy_server(misbehaving_server: Factory) -> None:
    server = misbehaving_server(healthy=False)
    with pytest.raises(ConnectionError, match="503"):
        run(make_client(server.url).connect())


def test_connect_no_url_configured() -> None:
    with pytest.raises(ConfigurationError, match="no server URL configured") as info:
        run(HTTPVLLMClient(VLLMConfig()).connect())
    assert "--server" in str(info.value.hint)


def test_choose_model_rules() -> None:
    entries = [{"id": "a", "max_model_len": 100}, {"id": "b", "root": "/models/b", "max_model_len": 200}]
    assert _choose_model(VLLMConfig(model_id="b"), entries, "u") == ("b", 200)
    assert _choose_model(VLLMConfig(model="a"), entries, "u") == ("a", 100)
    assert _choose_model(VLLMConfig(model="/models/b"), entries, "u") == ("b", 200)
    assert _choose_model(VLLMConfig(model_id="zzz"), entries[:1], "u") == ("a", 100)
    with pytest.raises(ConfigurationError, match="serves a, b"):
        _choose_model(VLLMConfig(model="c"), entries, "u")


# -- transient faults ------------------------------------------------------------------------------
def test_503_then_success(misbehaving_server: Factory) -> None:
    server = misbehaving_server()
    server.fail_next("503", 3)
    client = make_client(server.url, max_retries=3)
    responses = run(generate(client, requests_for(["Alice"])))
    assert responses[0].success, responses[0].error
    assert entity_text(responses[0]) == "Alice"
    assert client.stats.retries == 3
    assert server.chat_requests == 4


def test_429_honours_retry_after(misbehaving_server: Factory) -> None:
    server = misbehaving_server()
    server.fail_next("429", 2)
    client = make_client(server.url)
    client.backoff_base = client.backoff_cap = 10.0  # only Retry-After: 0 keeps this fast
    start = time.monotonic()
    responses = run(generate(client, requests_for(["Bob"])))
    assert time.monotonic() - start < 3.0
    assert responses[0].success and client.stats.retries == 2


def test_dropped_connections_are_retried(misbehaving_server: Factory) -> None:
    server = misbehaving_server()
    server.plan["Carol signed the lease."] = ["drop", "drop"]
    client = make_client(server.url)
    responses = run(generate(client, requests_for(["Carol"])))
    assert responses[0].success, responses[0].error
    assert server.seen["Carol signed the lease."] == 3
    assert client.stats.retries == 2


def test_slow_answer_retried_then_succeeds(misbehaving_server: Factory) -> None:
    server = misbehaving_server(slow_seconds=2.0)
    server.plan["Dave signed the lease."] = ["slow"]
    client = make_client(server.url, http_timeout=0.5)
    responses = run(generate(client, requests_for(["Dave"])))
    assert responses[0].success, responses[0].error
    assert client.stats.retries == 1


def test_slow_answers_exhaust_retries(misbehaving_server: Factory) -> None:
    server = misbehaving_server(slow_seconds=2.0)
    server.always = "slow"
    client = make_client(server.url, http_timeout=0.4, max_retries=2)
    (response,) = run(generate(client, requests_for(["Eve"])))
    assert response.error_kind == "http_retry_exhausted"
    assert "3 attempts" in str(response.error) and "timed out" in str(response.error)
    assert server.chat_requests == 3
    assert client.stats.retries == 2
    assert client.get_stats()["failed_generations"] == 1


def test_400_is_not_retried(misbehaving_server: Factory) -> None:
    server = misbehaving_server()
    server.always = "400"
    client = make_client(server.url)
    (response,) = run(generate(client, requests_for(["Frank"])))
    assert response.error_kind == "http_4xx"
    assert "400" in str(response.error) and "'messages' is malformed" in str(response.error)
    assert server.chat_requests == 1 and client.stats.retries == 0


def test_malformed_usage_keeps_the_completion(misbehaving_server: Factory) -> None:
    """Issue 13: a 200 whose usage block is "x" lost a good completion as an internal error."""
    server = misbehaving_server()
    server.always = "bad_usage"
    (response,) = run(generate(make_client(server.url), requests_for(["Grace"])))
    assert response.success and entity_text(response) == "Grace"
    assert (response.prompt_tokens, response.completion_tokens) == (0, 0)


def test_server_refusing_grammars_gets_the_schema_with_one_warning(
    misbehaving_server: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12: grounded decoding sends the grammar; a server that refuses it is sent the JSON
    schema for the rest of the run, with one warning naming the server, not one per request."""
    server = misbehaving_server()
    server.refuse_grammars = True
    schema = {"type": "object"}
    reqs = requests_for(names(6), grammar='start: "x"', json_schema=schema)
    client = make_client(server.url, concurrency=1)
    with caplog.at_level(logging.WARNING, logger="vllm_extract.clients.http"):
        responses = run(generate(client, reqs))
    assert all(r.success for r in responses)
    warnings = [r.getMessage() for r in caplog.records if "refused grounded decoding" in r.getMessage()]
    assert len(warnings) == 1 and server.url in warnings[0]
    sent = [b["structured_outputs"] for b in server.bodies]
    assert sent[0] == {"grammar": 'start: "x"'}  # refused once
    assert sent[1:] == [{"json": schema, "disable_any_whitespace": True}] * 6
    assert client.stats.retries == 0


def test_context_overflow_400(misbehaving_server: Factory) -> None:
    server = misbehaving_server()
    server.always = "overflow"
    client = make_client(server.url)
    (response,) = run(generate(client, requests_for(["Grace"])))
    assert response.error_kind == "context_overflow"
    assert server.chat_requests == 1
    assert client.get_stats()["context_overflows"] == 1


def test_batch_with_random_faults(misbehaving_server: Factory) -> None:
    max_retries = 3
    # Timeouts leave a wide margin: a loaded CI machine must not turn an "ok" answer into a timeout.
    server = misbehaving_server(slow_seconds=3.0)
    rng = random.Random(20240607)
    people = names(30)
    reqs = requests_for(people)
    planned: dict[str, int] = {}
    for i, request in enumerate(reqs):
        prompt = request.messages[-1]["content"]
        if i % 10 == 9:  # more faults than retries: must end as an error record
            faults = ["503"] * (max_retries + 1)
        else:
            faults = [rng.choice(["503", "429", "drop", "slow", "ok"]) for _ in range(rng.randint(0, max_retries))]
        server.plan[prompt] = faults
        planned[prompt] = faults.index("ok") if "ok" in faults else len(faults)
    client = make_client(server.url, max_retries=max_retries, http_timeout=1.0, concurrency=8)
    responses = run(generate(client, reqs))

    assert [r.request_id for r in responses] == [r.request_id for r in reqs]
    assert len({r.request_id for r in responses}) == 30
    for i, (request, response) in enumerate(zip(reqs, responses, strict=True)):
        prompt = request.messages[-1]["content"]
        if i % 10 == 9:
            assert response.error_kind == "http_retry_exhausted"
            assert server.seen[prompt] == max_retries + 1
        else:
            assert response.success, response.error
            assert entity_text(response) == people[i]
            # one attempt per planned fault, plus the one that succeeded: nothing sent twice
            assert server.seen[prompt] == planned[prompt] + 1, (prompt, server.plan[prompt])
    assert server.chat_requests <= len(reqs) * (max_retries + 1)
    stats = client.get_stats()
    assert stats["requests_processed"] == 30
    assert stats["successful_generations"] == 27 and stats["failed_generations"] == 3
    assert stats["retries"] == server.chat_requests - 30


# -- several servers -------------------------------------------------------------------------------
def test_dead_server_is_skipped(misbehaving_server: Factory, dead_server_url: str) -> None:
    live = misbehaving_server()
    client = make_client(dead_server_url, live.url, max_retries=0)
    responses = run(generate(client, requests_for(names(10))))
    assert all(r.success for r in responses)
    assert live.chat_requests == 10


def test_server_failing_mid_run_hands_retries_over(misbehaving_server: Factory, dead_server_url: str) -> None:
    live = misbehaving_server()
    client = make_client(dead_server_url, live.url, max_retries=2)

    async def scenario() -> list[VLLMResponse]:
        await client.connect()
        for server in client._servers:  # the dead one's cool-down has run out
            server.down_until = 0.0
        try:
            return await client.generate_batch(requests_for(names(10)))
        finally:
            await client.close()

    responses = run(scenario())
    assert all(r.success for r in responses)
    assert live.chat_requests == 10
    assert 1 <= client.stats.retries <= 10


def test_round_robin_across_servers(misbehaving_server: Factory) -> None:
    a, b = misbehaving_server(), misbehaving_server()
    client = make_client(a.url, b.url, concurrency=2)
    responses = run(generate(client, requests_for(names(10))))
    assert all(r.success for r in responses)
    assert a.chat_requests == b.chat_requests == 5


# -- request bodies --------------------------------------------------------------------------------
def test_sampling_is_enforced(misbehaving_server: Factory, caplog: pytest.LogCaptureFixture) -> None:
    server = misbehaving_server(model="served-model")
    schema = {"type": "object", "properties": {"entities": {"type": "array"}}}
    client = make_client(server.url, api_key="sekret")
    request = VLLMRequest(
        messages=[{"role": "user", "content": "Heidi"}],
        temperature=0.7,
        seed=7,
        json_schema=schema,
        max_tokens=64,
    )
    with caplog.at_level(logging.WARNING):
        (response,) = run(generate(client, [request]))
    assert response.success
    (body,) = server.bodies
    assert body["temperature"] == 0.0 and body["seed"] == 42
    assert body["model"] == "served-model" and body["max_tokens"] == 64
    assert body["structured_outputs"] == {"json": schema, "disable_any_whitespace": True}  # compact JSON (issue 12)
    assert any("temperature 0.7" in r.getMessage() for r in caplog.records)
    assert any("seed 7" in r.getMessage() for r in caplog.records)
    assert all(h.get("authorization") == "Bearer sekret" for h in server.headers)


def test_max_tokens_fits_the_server_context(misbehaving_server: Factory) -> None:
    server = misbehaving_server(max_model_len=4096)
    client = make_client(server.url, max_completion_tokens=8000, max_model_len=32768)
    (response,) = run(generate(client, requests_for(["Ina"])))
    assert response.success and server.bodies[0]["max_tokens"] == 4095


def test_usage_and_timing_recorded(misbehaving_server: Factory) -> None:
    server = misbehaving_server()
    client = make_client(server.url)
    (response,) = run(generate(client, requests_for(["Ivan"])))
    assert response.prompt_tokens == 4 and response.completion_tokens > 0
    assert response.finish_reason == "stop" and response.response_time_ms > 0
    assert client.get_stats()["total_prompt_tokens"] == 4


# -- tokenizer -------------------------------------------------------------------------------------
def test_remote_tokenizer_counts(misbehaving_server: Factory) -> None:
    server = misbehaving_server(tokenize=True)
    tok = RemoteTokenizer(server.url, server.model)
    try:
        assert tok.exact
        assert len(tok.encode("one two three")) == 3
        assert len(tok.encode_chat([{"role": "user", "content": "a b"}])) == 4
        assert tok.offsets("abc def")[-1][1] == 7
    finally:
        tok.close()


def test_remote_tokenizer_without_endpoint_estimates(
    misbehaving_server: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = misbehaving_server(tokenize=False)
    client = make_client(server.url)
    run(client.connect())
    with caplog.at_level(logging.WARNING):
        tok = client.get_tokenizer()
    assert not tok.exact
    assert len(tok.encode_chat([{"role": "user", "content": "hello world"}])) > 0
    assert any("no /tokenize" in r.getMessage() for r in caplog.records)
    run(client.close())


def test_custom_transport_is_used() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m", "max_model_len": 1000}]})
        text = json.loads(request.content)["messages"][-1]["content"]
        message = {"role": "assistant", "content": first_capitalized(text)}
        return httpx.Response(200, json={"model": "m", "choices": [{"message": message, "finish_reason": "stop"}]})

    config = VLLMConfig(base_url="http://127.0.0.1:9")
    client = HTTPVLLMClient(config, transport=httpx.MockTransport(handler))
    responses = run(generate(client, requests_for(["Judy"])))
    assert responses[0].content == "Judy" and client.max_model_len == 1000


# -- the real vLLM server (slow) -------------------------------------------------------------------
ENTITY_SCHEMA = {
    "type": "object",
    "properties": {
        "entities": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["PERSON", "LOCATION"]},
                    "text": {"type": "string", "maxLength": 30},
                },
                "required": ["type", "text"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["entities"],
    "additionalProperties": False,
}


@pytest.mark.slow
def test_vllm_server_connect(vllm_server: str, tiny_model_path: Any) -> None:
    client = HTTPVLLMClient(VLLMConfig(base_url=vllm_server))
    assert run(client.connect())
    assert client.model_name == str(tiny_model_path)
    assert client.server_max_model_len == 8192 and client.max_model_len == 8192
    run(client.close())


@pytest.mark.slow
def test_vllm_server_structured_batch(vllm_server: str) -> None:
    client = HTTPVLLMClient(VLLMConfig(base_url=vllm_server, max_completion_tokens=200))
    texts = ["Alice met Bob in Paris.", "Carol lives in Berlin.", "Dan flew to Rome."]
    reqs = [
        VLLMRequest(
            messages=[
                {"role": "system", "content": "Extract PERSON and LOCATION entities as JSON."},
                {"role": "user", "content": text},
            ],
            json_schema=ENTITY_SCHEMA,
        )
        for text in texts
    ]
    responses = run(generate(client, reqs))
    assert len(responses) == 3
    for response in responses:
        assert response.success, response.error
        data = json.loads(response.content)
        assert isinstance(data["entities"], list)
        assert all(set(e) == {"type", "text"} for e in data["entities"])
        assert response.prompt_tokens > 0 and response.completion_tokens > 0


@pytest.mark.slow
def test_vllm_server_tokenizer_counts_match_local(vllm_server: str, tiny_model_path: Any) -> None:
    messages = [
        {"role": "system", "content": "Extract entities."},
        {"role": "user", "content": "Judge Ada Lovelace ruled in London on 3 May 1843."},
    ]
    local = load_tokenizer(str(tiny_model_path))
    assert local.exact
    remote = RemoteTokenizer(vllm_server, str(tiny_model_path))
    try:
        assert remote.encode_chat(messages) == local.encode_chat(messages)
        assert remote.encode("Ada Lovelace, 1843") == local.encode("Ada Lovelace, 1843")
    finally:
        remote.close()

    client = HTTPVLLMClient(VLLMConfig(base_url=vllm_server, max_completion_tokens=4))
    (response,) = run(generate(client, [VLLMRequest(messages=messages)]))
    assert response.prompt_tokens == len(local.encode_chat(messages))
