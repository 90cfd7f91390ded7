"""What happens after an answer, the same on every transport: the retry of a cut answer, and
further passes.

A request may carry ``retry_max_tokens``: when its answer is cut at ``max_tokens``
(``finish_reason == "length"``) it is asked again once with that budget, unless the answer spent
at least ``LOOPING_SHARE`` of itself on entities it had already listed (the tiny model's loop:
measured, a bigger budget only buys more repeats; ``extract.grammar.repeated_entity_token_share``).
The retried answer replaces the first; the usage of both is counted.

A request may carry a ``FollowUp``: after a complete answer the model is asked again, the
conversation so far before the new question (``next_pass``). The final response is the first
pass's, with the later passes' answers in ``passes`` and the usage of all of them
(``merge_passes``).
"""

from __future__ import annotations

import dataclasses

from ..extract.grammar import repeated_entity_token_share
from .base import VLLMRequest, VLLMResponse

__all__ = ["LOOPING_SHARE", "looping", "merge_passes", "merge_retry", "next_pass", "retry_budget"]

LOOPING_SHARE = 0.5  # a cut answer that spent this share of itself on repeats is not retried


def looping(content: str) -> bool:
    """Whether an answer spent at least ``LOOPING_SHARE`` of its characters on entities it had
    already listed."""
    return repeated_entity_token_share(content, len) >= LOOPING_SHARE


def retry_budget(request: VLLMRequest, response: VLLMResponse) -> int | None:
    """The budget to ask ``request`` again with after ``response``, or None (no retry): only a
    successful, cut, non-looping first answer of a request with a larger ``retry_max_tokens``."""
    wanted = request.retry_max_tokens
    if wanted is None or not response.success or not response.truncated:
        return None
    if wanted <= (request.max_tokens or 0) or looping(response.content):
        return None
    return wanted


def merge_retry(first: VLLMResponse, retried: VLLMResponse) -> VLLMResponse:
    """The final response after a retry: the retried answer (the first one when the retry failed),
    with the tokens of both attempts counted and ``attempts`` 2."""
    chosen = retried if retried.success else first
    return dataclasses.replace(
        chosen,
        prompt_tokens=first.prompt_tokens + retried.prompt_tokens,
        completion_tokens=first.completion_tokens + retried.completion_tokens,
        cached_tokens=first.cached_tokens + retried.cached_tokens,
        response_time_ms=first.response_time_ms + retried.response_time_ms,
        attempts=2,
    )


def next_pass(request: VLLMRequest, response: VLLMResponse, answer_ids: list[int] | None) -> VLLMRequest | None:
    """The next pass's request after ``response`` to ``request``, or None (no follow-up left, or the
    answer failed or was cut). ``answer_ids``: the answer's token ids when the transport has them
    (the engine does); with the request's own token ids and the follow-up's ``suffix_ids`` the
    next prompt is built from ids (an answer that ends with the template's end-of-turn token, as
    the suffix begins, is not counted twice); otherwise the next request carries chat messages."""
    followup = request.followup
    if followup is None or followup.passes < 1 or not response.success or response.truncated:
        return None
    messages = [
        *request.messages,
        {"role": "assistant", "content": response.content},
        {"role": "user", "content": followup.message},
    ]
    ids = None
    if request.prompt_token_ids is not None and followup.suffix_ids and answer_ids is not None:
        answer = list(answer_ids)
        if answer and answer[-1] == followup.suffix_ids[0]:
            answer.pop()
        ids = [*request.prompt_token_ids, *answer, *followup.suffix_ids]
    rest = dataclasses.replace(followup, passes=followup.passes - 1) if followup.passes > 1 else None
    return dataclasses.replace(
        request,
        messages=messages,
        prompt_token_ids=ids,
        max_tokens=followup.max_tokens or request.max_tokens,
        retry_max_tokens=None,
        followup=rest,
    )


def merge_passes(answers: list[VLLMResponse]) -> VLLMResponse:
    """The final response of a request answered over several passes: the first pass's answer, the
    later ones in ``passes``, the tokens and attempts of all of them counted."""
    first, later = answers[0], answers[1:]
    if not later:
        return first
    return dataclasses.replace(
        first,
        prompt_tokens=sum(a.prompt_tokens for a in answers),
        completion_tokens=sum(a.completion_tokens for a in answers),
        cached_tokens=sum(a.cached_tokens for a in answers),
        response_time_ms=sum(a.response_time_ms for a in answers),
        attempts=sum(a.attempts for a in answers),
        passes=list(later),
    )
