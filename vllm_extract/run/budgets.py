"""Token budgets: the one place their rules are written.

All counts are in tokens of the model's own tokenizer, chat template included:

- context in force = min(``max_model_len``, the model's own limit from its ``config.json`` or the
  server's ``/v1/models``) (``fit_to_context``);
- a prompt may use up to min(``max_prompt_tokens``, context - 1);
- its completion budget is min(``max_completion_tokens``, context - prompt): it shrinks so prompt +
  completion fits, and a prompt over its budget or that leaves no room is a
  ``ContextOverflowError`` (``completion_budget``);
- room for text in a prompt = min(``max_prompt_tokens``, context - ``max_completion_tokens``)
  minus what the prompt holds besides the text (``text_room``);
- chunk size = min(``chunk_tokens``, room for text once the instructions, the template and
  ``PROMPT_SLACK_TOKENS`` are counted). When a completion of the full budget leaves less than
  ``MIN_CHUNK_TOKENS`` for text, the completion budget shrinks, down to a quarter of the context at
  most; a chunk still under ``MIN_CHUNK_TOKENS`` is a ``BudgetError`` (``fit_budgets``).

``build_plan`` applies them once; ``RunPlan.completion_budget`` answers per prompt. The clients
only clamp what a server would refuse. ``TokenEstimator`` (the public budget API since 0.1) asks
the same rules about any prompt.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from ..config import VLLMConfig
from ..exceptions import BudgetError, ContextOverflowError
from ..extract.tokens import EstimateTokenizer, Messages, Tokenizer

__all__ = [
    "MIN_CHUNK_TOKENS",
    "PROMPT_SLACK_TOKENS",
    "TokenEstimator",
    "completion_budget",
    "context_room",
    "fit_budgets",
    "fit_to_context",
    "text_room",
]

logger = logging.getLogger(__name__)

PROMPT_SLACK_TOKENS = 8  # room for tokens that merge differently at a chunk's edges
MIN_CHUNK_TOKENS = 32  # below this a chunk holds too little text to be worth a request


def fit_to_context(config: VLLMConfig, context: int) -> VLLMConfig:
    """A copy whose budgets fit a model context of ``context`` tokens (the smaller of it and
    ``max_model_len``): prompts and completions leave at least one token of room."""
    limit = min(context, config.max_model_len)
    return dataclasses.replace(
        config,
        max_model_len=limit,
        max_prompt_tokens=min(config.max_prompt_tokens, limit - 1),
        max_completion_tokens=min(config.max_completion_tokens, limit - 1),
    )


def context_room(config: VLLMConfig, prompt_tokens: int) -> int:
    """Tokens the context leaves after a prompt: the most any completion of it can get."""
    return config.max_model_len - prompt_tokens


def completion_budget(config: VLLMConfig, prompt_tokens: int, wanted: int | None = None) -> int:
    """Completion tokens for a prompt of ``prompt_tokens`` tokens: min(``wanted`` (default
    ``max_completion_tokens``), context - prompt). Raises ``ContextOverflowError`` when the prompt
    is over ``max_prompt_tokens`` or leaves no room."""
    limit = config.max_prompt_tokens
    if prompt_tokens > limit:
        raise ContextOverflowError(
            f"prompt of {prompt_tokens} tokens is over the {limit}-token prompt budget",
            estimated_tokens=prompt_tokens,
            max_tokens=limit,
            hint="lower chunk_tokens or shorten the instructions",
        )
    room = context_room(config, prompt_tokens)
    if room < 1:
        raise ContextOverflowError(
            f"prompt of {prompt_tokens} tokens leaves no room in the {config.max_model_len}-token context",
            estimated_tokens=prompt_tokens,
            max_tokens=config.max_model_len - 1,
            hint="lower chunk_tokens",
        )
    return min(wanted or config.max_completion_tokens, room)


def text_room(config: VLLMConfig, reserved_tokens: int) -> int:
    """Room for text in a prompt holding ``reserved_tokens`` other tokens: under
    ``max_prompt_tokens`` and leaving a completion of the full budget."""
    by_prompt = config.max_prompt_tokens - reserved_tokens
    return min(by_prompt, _room_by_context(config, reserved_tokens))


def _room_by_context(config: VLLMConfig, reserved_tokens: int) -> int:
    return config.max_model_len - config.max_completion_tokens - reserved_tokens


def fit_budgets(config: VLLMConfig, overhead_tokens: int, chunk_tokens: int) -> tuple[VLLMConfig, int]:
    """The budgets in force and the chunk size, for prompts whose instructions and template take
    ``overhead_tokens`` (``config`` already fitted to the context). Shrinks the completion budget
    when a full one leaves no room for text. Raises ``BudgetError`` (a configuration error, exit 2)
    when no chunk of ``MIN_CHUNK_TOKENS`` fits even then."""
    reserved = overhead_tokens + PROMPT_SLACK_TOKENS
    if _room_by_context(config, reserved) < MIN_CHUNK_TOKENS:
        shrunk = config.max_model_len - reserved - max(MIN_CHUNK_TOKENS, config.max_model_len // 4)
        if shrunk >= 1:
            logger.warning(
                "max_completion_tokens %d leaves no room for text in a %d-token context; using %d",
                config.max_completion_tokens,
                config.max_model_len,
                shrunk,
            )
            config = dataclasses.replace(config, max_completion_tokens=shrunk)
    size = min(chunk_tokens, text_room(config, reserved))
    if size < MIN_CHUNK_TOKENS:
        raise BudgetError(
            f"the instructions take {overhead_tokens} tokens and leave no room for document text "
            f"in a {config.max_model_len}-token context with {config.max_completion_tokens} completion tokens",
            hint="raise max_model_len or max_prompt_tokens, use fewer entity types, or a model with a longer context",
        )
    return config, size


class TokenEstimator:
    """The documented budget API: prompt sizes, completion budgets and chunk sizes, by the rules
    above, for any prompt counted with ``tokenizer`` (default: a labelled estimate)."""

    def __init__(self, config: VLLMConfig | None = None, tokenizer: Tokenizer | None = None) -> None:
        self.config = config or VLLMConfig()
        self.tokenizer: Tokenizer = tokenizer or EstimateTokenizer()

    @property
    def exact(self) -> bool:
        return self.tokenizer.exact

    def count_tokens(self, prompt: str | Messages) -> int:
        """Tokens of a plain string, or of chat messages with the template applied."""
        if isinstance(prompt, str):
            return len(self.tokenizer.encode(prompt))
        return len(self.tokenizer.encode_chat(prompt))

    def estimate_prompt_tokens(
        self, prompt: str | Messages, max_completion_tokens: int | None = None
    ) -> tuple[int, int]:
        """Return ``(prompt_tokens, adjusted_max_completion)``.

        The completion budget shrinks so that prompt + completion fits ``max_model_len``.
        Raises ContextOverflowError when the prompt alone is over ``max_prompt_tokens`` or leaves
        no room for a completion.
        """
        prompt_tokens = self.count_tokens(prompt)
        return prompt_tokens, self.completion_budget(prompt_tokens, max_completion_tokens)

    def completion_budget(self, prompt_tokens: int, max_completion_tokens: int | None = None) -> int:
        """``completion_budget`` for this estimator's settings."""
        return completion_budget(self.config, prompt_tokens, max_completion_tokens)

    def calculate_chunk_size(self, total_tokens: int, overlap_percent: float = 0.1) -> tuple[int, int]:
        """Return ``(chunk_size, num_chunks)`` for a text of ``total_tokens`` tokens.

        Chunks are at most the largest size that fits the prompt budget (after the completion
        reserve), overlapping by ``overlap_percent``; sizes are balanced so the last chunk is not a
        sliver.
        """
        limit = self.max_chunk_tokens()
        if total_tokens <= limit:
            return max(total_tokens, 0), 1 if total_tokens > 0 else 0
        overlap = int(limit * overlap_percent)
        stride = limit - overlap
        num = math.ceil((total_tokens - overlap) / stride)
        size = math.ceil((total_tokens + (num - 1) * overlap) / num)
        return min(size, limit), num

    def max_chunk_tokens(self, overhead_tokens: int = 0) -> int:
        """The largest chunk that fits (``text_room``), at least 1: under max_prompt_tokens and
        leaving the completion reserve."""
        return max(1, text_room(self.config, overhead_tokens))
