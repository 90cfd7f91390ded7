"""The engine's settings chosen for this machine, part of the run plan (issue 19): the dtype, vLLM's
per-step token budget (``max_num_batched_tokens``) and its execute-model timeout, each with the
reason the report and ``vllm-extract plan`` show.

``choose_engine`` applies the rules of ``engine.hardware`` (machine facts in, choices out) to the
budgets in force and the model folder; ``given_engine`` describes an engine that exists already
(given to ``run_job``, or loaded before the plan: its own values, next to what this machine's plan
would choose). ``build_plan`` calls one of them; nothing else decides these settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..clients.base import VLLMClientInterface, VLLMClientType
from ..config import VLLMConfig
from ..engine.hardware import choose_dtype, choose_step_budget
from ..engine.machine_facts import TIMEOUT_ENV, MachineFacts, read_machine_facts
from ..engine.model_size import model_attention_width, model_parameters

__all__ = ["EngineChoice", "choose_engine", "given_engine"]


@dataclass(frozen=True, slots=True)
class EngineChoice:
    """The engine's dtype, per-step token budget and execute-model timeout, and why (issue 19).

    - ``dtype``: what vLLM loads the model in: ``"bfloat16"``, ``"float32"``, ``"float16"``, or
      ``"auto"`` (GPU: vLLM picks from the checkpoint); ``None`` for a server (not known here). It
      can change results, so it is in the fingerprint.
    - ``dtype_reason``: one line: the CPU flag found or missing, torch's or oneDNN's limit, or
      ``--dtype X (override)`` (``engine.hardware.choose_dtype``).
    - ``max_num_batched_tokens``: vLLM's per-step token budget in force; ``None`` for a server.
    - ``execute_model_timeout_s``: vLLM's execute-model timeout in force, in seconds (``None`` for a
      server); ``timeout_changed``: the plan raised it (``VLLMConfig.execute_model_timeout`` takes it
      to the engine). vLLM applies it only where an engine step crosses processes
      (``tensor_parallel_size`` > 1); with one engine process per engine there is no timeout.
    - ``step_reason``: one line: how the budget and the timeout were chosen
      (``engine.hardware.choose_step_budget``).
    - ``source``: ``"plan"`` (chosen here for the engine this run starts), ``"engine"`` (an engine
      given to the run, already loaded: its own values) or ``"server"``.
    """

    dtype: str | None
    dtype_reason: str
    max_num_batched_tokens: int | None
    execute_model_timeout_s: int | None
    step_reason: str
    timeout_changed: bool = False
    source: str = "plan"

    def as_dict(self) -> dict[str, Any]:
        """The choice for reports and ``vllm-extract plan --json``."""
        return {
            "dtype": self.dtype,
            "dtype_reason": self.dtype_reason,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "execute_model_timeout_s": self.execute_model_timeout_s,
            "step_budget_reason": self.step_reason,
            "engine_settings_from": self.source,
        }

    def apply(self, config: VLLMConfig) -> VLLMConfig:
        """``config`` with this choice in force (what the engine is built with)."""
        changes: dict[str, Any] = {}
        if self.dtype is not None:
            changes["dtype"] = self.dtype
        if self.max_num_batched_tokens is not None:
            changes["max_num_batched_tokens"] = self.max_num_batched_tokens
        if self.timeout_changed:
            changes["execute_model_timeout"] = self.execute_model_timeout_s
        return dataclasses.replace(config, **changes)


def choose_engine(
    config: VLLMConfig,
    model_folder: str | None,
    *,
    facts: MachineFacts | None = None,
    context_tokens: int | None = None,
) -> EngineChoice:
    """The dtype, step budget and timeout for an engine of ``config`` (budgets in force) on this
    machine (``facts``, read when None: ``engine.machine_facts.read_machine_facts``), for the model in the
    local folder ``model_folder`` (None: not here, its size unknown).

    The dtype: ``config.dtype`` when set (an override), else bfloat16 on a CPU with native bf16,
    float32 on other CPUs, ``auto`` on GPU. The step budget and timeout: from the model's parameter
    count (a local folder's safetensors headers) and its attention width over ``context_tokens``
    (the longest context a request can reach; default ``max_model_len``), so that the estimated
    worst step stays within a quarter of the timeout; never above ``config.max_num_batched_tokens``.
    ``config.execute_model_timeout``, when set, is the user's timeout and is kept. Raises
    ``ConfigurationError`` for a dtype vLLM does not accept or a malformed
    ``VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS``.
    """
    facts = facts or read_machine_facts()
    if config.execute_model_timeout is not None:
        facts = dataclasses.replace(facts, execute_model_timeout_s=config.execute_model_timeout)
    dtype = choose_dtype(config.dtype, facts)
    budget = choose_step_budget(
        facts,
        dtype.dtype,
        model_parameters(model_folder) if model_folder else None,
        config.max_num_batched_tokens,
        config.max_model_len,
        attention_width=model_attention_width(model_folder) if model_folder else None,
        context_tokens=context_tokens,
        enable_chunked_prefill=config.enable_chunked_prefill,
        max_num_seqs=config.max_num_seqs,
    )
    step_reason = budget.reason
    if budget.timeout_changed:
        step_reason += f" ({TIMEOUT_ENV}={budget.execute_model_timeout_s} for the engine)"
    if config.tensor_parallel_size == 1:
        step_reason += "; vLLM applies the timeout only with tensor_parallel_size > 1"
    return EngineChoice(
        dtype.dtype,
        dtype.reason,
        budget.max_num_batched_tokens,
        budget.execute_model_timeout_s,
        step_reason,
        timeout_changed=budget.timeout_changed and config.execute_model_timeout is None,
    )


def given_engine(config: VLLMConfig, model_folder: str | None, client: VLLMClientInterface) -> EngineChoice:
    """What a connected client's engine (already loaded: given to ``run_job``, or a hub model's) runs
    with, as it reports it (``client.engine_info``), next to what this machine's plan would choose;
    a server's is unknown."""
    info = client.engine_info
    if client.client_type is VLLMClientType.HTTP_API:
        return EngineChoice(None, "the server's (not known here)", None, None, "the server's", source="server")
    if not info:
        unknown = "not known: the client's engine did not report it"
        return EngineChoice(None, unknown, None, None, unknown, source="engine")
    chosen = choose_engine(config, model_folder)
    loaded = str(info.get("dtype") or chosen.dtype)
    built_with = client.config.dtype.strip().lower()
    if built_with == "auto" and chosen.dtype == "auto":  # GPU: vLLM picked, as a planned engine's would
        dtype, dtype_reason = "auto", f"{chosen.dtype_reason}; the engine loaded {loaded}"
    elif loaded == chosen.dtype:
        dtype, dtype_reason = loaded, f"{chosen.dtype_reason} (the engine loaded {loaded})"
    else:
        dtype = loaded
        dtype_reason = (
            f"{loaded}: as the engine loaded it (built with dtype {built_with}); "
            f"this machine's plan would choose {chosen.dtype_reason}"
        )
    budget = int(info.get("max_num_batched_tokens") or config.max_num_batched_tokens)
    if budget == chosen.max_num_batched_tokens:
        step_reason = chosen.step_reason
    else:
        step_reason = (
            f"{budget} tokens per step, as the engine was built; this machine's plan would choose {chosen.step_reason}"
        )
    timeout = client.config.execute_model_timeout or chosen.execute_model_timeout_s
    return EngineChoice(dtype, dtype_reason, budget, timeout, step_reason, source="engine")
