"""Stream parts that need no engine: occupancy, the restart supervisor, the task stream."""

from __future__ import annotations

import asyncio
import json

import pytest

from vllm_extract.clients.base import VLLMRequest, VLLMResponse
from vllm_extract.clients.stream import OccupancyMeter, StepRecord, StreamItem, TaskStream
from vllm_extract.clients.supervisor import RestartBudget, Supervisor
from vllm_extract.exceptions import EngineRestartsExhausted


def step(running: int, finished: int = 0, waiting: int = 0) -> StepRecord:
    return StepRecord(running=running, waiting=waiting, kv_usage=0.0, seconds=0.01, finished=finished)


def test_a_full_engine_is_fully_occupied_and_the_tail_is_judged_by_what_is_left():
    meter = OccupancyMeter(max_num_seqs=4)
    for _ in range(10):
        meter.step(step(4, finished=1))  # always 4 running: occupancy 1
    # the run's last 3 requests: fewer than max_num_seqs remain, so 3 running is full occupancy
    meter.step(step(3, finished=1))
    meter.step(step(2, finished=1))
    meter.step(step(1, finished=1))
    result = meter.result()
    assert result["occupancy"] == 1.0 and result["steps"] == 13 and result["limited_steps"] == 0


def test_a_starved_engine_shows_low_occupancy():
    meter = OccupancyMeter(max_num_seqs=4)
    for _ in range(8):
        meter.step(step(1, finished=1))  # one request at a time while 8 were to come
    meter.step(step(4, finished=4))
    result = meter.result()
    # the first 4 steps ran 1 of 4 (the run had >= 4 left); the tail is judged by what was left
    assert result["occupancy"] is not None and result["occupancy"] < 0.7


def test_steps_held_back_by_the_kv_cache_are_counted_apart():
    meter = OccupancyMeter(max_num_seqs=4)
    meter.step(step(2, waiting=3))  # requests waiting while 2 of 4 ran: limited, not the feed's fault
    meter.step(step(4, finished=4))
    meter.step(step(1, finished=1))
    result = meter.result()
    assert result["limited_steps"] == 1
    assert result["occupancy"] == 1.0 and result["occupancy_all_steps"] < 1.0


def item(key: int, group: int = 0) -> StreamItem:
    return StreamItem(key, VLLMRequest([], request_id=f"r{key}"), group=group, group_size=1)


def test_supervisor_resends_unanswered_in_order_after_a_crash():
    sup = Supervisor()
    sup.submitted([item(k, k) for k in range(5)])
    sup.admitted([0, 1, 2])
    sup.answered(0)
    resend, poison = sup.crashed()
    assert [i.key for i in resend] == [1, 2, 3, 4] and not poison
    assert not any(i.solo for i in resend)


def test_a_request_in_the_engine_at_two_crashes_runs_alone_then_is_poison_if_it_kills_again():
    sup = Supervisor()
    sup.submitted([item(k, k) for k in range(4)])
    sup.admitted([0, 1])
    sup.crashed()  # first crash: 0 and 1 were in the engine
    sup.admitted([1, 2])  # after the restart
    resend, poison = sup.crashed()  # second crash: 1 was in both
    assert not poison
    assert [i.key for i in resend] == [1, 0, 2, 3] and [i.solo for i in resend] == [True, False, False, False]
    sup.admitted([1])  # alone in a fresh engine...
    resend, poison = sup.crashed()  # ...and it kills it again: poison
    assert [k for k, _ in poison] == [1] and poison[0][1].error_kind == "poison_request"
    assert [i.key for i in resend] == [0, 2, 3]
    assert sup.poisoned == [1]


def test_the_restart_budget_is_a_bound():
    budget = RestartBudget(2)
    budget.take("crash 1")
    budget.take("crash 2")
    with pytest.raises(EngineRestartsExhausted, match="--resume"):
        budget.take("crash 3")
    assert budget.used == 2


def test_task_stream_retries_a_cut_answer_once_and_counts_both_attempts():
    calls: list[int | None] = []

    async def generate(request: VLLMRequest) -> VLLMResponse:
        calls.append(request.max_tokens)
        cut = request.max_tokens == 8
        body = json.dumps({"entities": [{"type": "PERSON", "text": "Ada"}]})
        return VLLMResponse(
            request.request_id,
            content=body[:10] if cut else body,
            finish_reason="length" if cut else "stop",
            prompt_tokens=10,
            completion_tokens=request.max_tokens or 0,
        )

    async def go() -> list[VLLMResponse]:
        stream = TaskStream(generate, concurrency=2)
        request = VLLMRequest([], max_tokens=8, request_id="a", retry_max_tokens=16)
        await stream.submit([StreamItem(0, request)])
        stream.end()
        return [r.response async for r in stream]

    (response,) = asyncio.run(go())
    assert calls == [8, 16]
    assert response.attempts == 2 and response.finish_reason == "stop"
    assert response.prompt_tokens == 20 and response.completion_tokens == 24


def test_a_follow_up_pass_extends_the_conversation_by_ids_and_by_messages():
    from vllm_extract.clients.base import FollowUp
    from vllm_extract.clients.followups import merge_passes, next_pass

    followup = FollowUp("Any more?", suffix_ids=[2, 10, 11, 12], max_tokens=5, passes=2)
    request = VLLMRequest([{"role": "user", "content": "doc"}], max_tokens=8, prompt_token_ids=[1, 5, 6],
                          request_id="d#0", retry_max_tokens=16, followup=followup)  # fmt: skip
    answer = VLLMResponse("d#0", content='{"entities":[]}', finish_reason="stop", prompt_tokens=3, completion_tokens=4)
    second = next_pass(request, answer, [30, 31, 2])  # the answer ends with the end-of-turn token (2)
    assert second is not None
    assert second.prompt_token_ids == [1, 5, 6, 30, 31, 2, 10, 11, 12]  # the end-of-turn token once
    assert second.messages[-2:] == [
        {"role": "assistant", "content": '{"entities":[]}'},
        {"role": "user", "content": "Any more?"},
    ]
    assert second.max_tokens == 5 and second.retry_max_tokens is None
    assert second.followup is not None and second.followup.passes == 1
    third = next_pass(second, answer, None)  # no answer ids (a server): the next pass goes as messages
    assert third is not None and third.prompt_token_ids is None and third.followup is None
    assert next_pass(third, answer, None) is None  # no passes left
    cut = VLLMResponse("d#0", content='{"entities":[', finish_reason="length")
    assert next_pass(request, cut, [30]) is None  # a cut answer is not followed up
    merged = merge_passes([answer, answer, answer])
    assert merged.passes == [answer, answer] and merged.completion_tokens == 12 and merged.attempts == 3


def test_the_engine_environment_runs_the_core_in_process_and_passes_batch_invariance():
    from vllm_extract.clients.engine_build import engine_environment
    from vllm_extract.config import VLLMConfig

    assert engine_environment(VLLMConfig()) == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    assert engine_environment(VLLMConfig(batch_invariant=True))["VLLM_BATCH_INVARIANT"] == "1"
    # Issue 19: a timeout the plan raised for a slow CPU reaches the engine's environment.
    raised = engine_environment(VLLMConfig(execute_model_timeout=600))
    assert raised["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"] == "600"
