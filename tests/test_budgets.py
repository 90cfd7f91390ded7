"""The budget rules, written once (run/budgets.py): the plan and TokenEstimator both ask them."""

from __future__ import annotations

import logging

import pytest

from vllm_extract.config import VLLMConfig
from vllm_extract.exceptions import BudgetError, ContextOverflowError
from vllm_extract.run.budgets import (
    MIN_CHUNK_TOKENS,
    PROMPT_SLACK_TOKENS,
    TokenEstimator,
    completion_budget,
    fit_budgets,
    fit_to_context,
)


def test_fit_to_context_leaves_a_token_of_room() -> None:
    fitted = fit_to_context(VLLMConfig(), 8192)
    assert (fitted.max_model_len, fitted.max_prompt_tokens, fitted.max_completion_tokens) == (8192, 8191, 4096)
    assert fit_to_context(VLLMConfig(max_model_len=4096), 8192).max_model_len == 4096  # the smaller one


def test_completion_budget_shrinks_to_fit_and_refuses_what_cannot() -> None:
    config = VLLMConfig(max_model_len=1000, max_prompt_tokens=900, max_completion_tokens=500)
    assert completion_budget(config, 100) == 500
    assert completion_budget(config, 900) == 100
    assert completion_budget(config, 100, wanted=50) == 50
    with pytest.raises(ContextOverflowError, match="over the 900-token prompt budget"):
        completion_budget(config, 901)
    assert TokenEstimator(config).completion_budget(900) == completion_budget(config, 900)


def test_fit_budgets_shrinks_the_completion_before_refusing(caplog: pytest.LogCaptureFixture) -> None:
    config = VLLMConfig(max_model_len=1000, max_prompt_tokens=999, max_completion_tokens=999)
    with caplog.at_level(logging.WARNING, logger="vllm_extract.run.budgets"):
        fitted, chunk = fit_budgets(config, 100, 12000)
    assert fitted.max_completion_tokens == 1000 - 100 - PROMPT_SLACK_TOKENS - 250  # a quarter of the context left
    assert chunk == 250 and "leaves no room for text" in caplog.text
    assert fit_budgets(VLLMConfig(), 100, 2000) == (VLLMConfig(), 2000)
    with pytest.raises(BudgetError, match="the instructions take 990 tokens"):
        fit_budgets(config, 990, 12000)
    assert MIN_CHUNK_TOKENS == 32
