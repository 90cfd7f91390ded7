"""``vllm-extract plan``: what a run would do, without loading an engine.

``plan_job`` builds the run's plan with the model's own tokenizer (no engine), reads every input and
prepares every prompt exactly as ``run`` would, and counts: documents, pages, chunks, prompt tokens,
bad inputs, and per document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from ..config import Settings
from ..exceptions import ContextOverflowError
from ..readers import BadInput, Document, SkippedFile
from .pipeline import ExtractionPipeline
from .plan import plan_for_local_model, read_inputs, resolve_model

__all__ = ["PlanResult", "plan_job"]


@dataclass
class PlanResult:
    """What a run would do, without loading an engine. ``pages``: pages of the converted documents
    (PDF, DOCX, HTML); ``per_document`` entries carry ``pages`` for those. ``dtype`` and
    ``max_num_batched_tokens`` (with ``execute_model_timeout_s``) are the engine settings the run
    would use on this machine, each with its reason (``run.machine.EngineChoice``). ``requests``:
    first answers asked for (chunks times questions; retries and further passes come on top);
    ``prompt_tokens`` are theirs. ``strategy``, ``questions`` (the types of each request per
    chunk), ``passes`` and ``examples`` (their sources) are how the model is asked
    (``RunPlan.as_dict``)."""

    documents: int = 0
    pages: int = 0
    bad_inputs: list[dict[str, Any]] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    chunks: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    largest_prompt_tokens: int = 0
    exact_tokens: bool = True
    tokenizer: str = ""
    max_model_len: int = 0
    chunk_tokens: int = 0
    max_completion_tokens: int = 0
    dtype: str | None = None
    dtype_reason: str = ""
    max_num_batched_tokens: int | None = None
    execute_model_timeout_s: int | None = None
    step_budget_reason: str = ""
    strategy: str = "all-types"
    questions: list[list[str]] = field(default_factory=list)
    passes: int = 1
    examples: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: str = ""
    per_document: list[dict[str, Any]] = field(default_factory=list)


def plan_job(inputs: Sequence[str], settings: Settings, *, stdin: IO[bytes] | None = None) -> PlanResult:
    """Read inputs and count tokens with the model's tokenizer (no engine): chunks, tokens, bad inputs.

    A model that cannot be resolved here (a missing folder, a folder without ``config.json``, a name
    not in the Hugging Face cache: a server may still know it) is no error: the counts are then
    estimates (``exact_tokens`` False, ``tokenizer`` says which). Raises ``BudgetError`` (budgets
    that leave no room for text) and ``ModelPreparationError`` (the tiny model cannot be prepared)
    before reading any input.
    """
    plan = plan_for_local_model(settings, resolve_model(settings.vllm.model, required=False))
    pipeline = ExtractionPipeline(None, plan)
    result = PlanResult(
        exact_tokens=plan.tokenizer.exact,
        tokenizer=plan.tokenizer.name,
        max_model_len=plan.max_model_len,
        chunk_tokens=plan.chunk_tokens,
        max_completion_tokens=plan.vllm.max_completion_tokens,
        fingerprint=plan.fingerprint,
        strategy=plan.extraction.strategy,
        questions=[list(q.types) for q in plan.questions],
        passes=plan.extraction.passes,
        examples=[e.as_dict() for e in plan.examples],
    )
    if plan.engine is not None:
        result.dtype, result.dtype_reason = plan.engine.dtype, plan.engine.dtype_reason
        result.max_num_batched_tokens = plan.engine.max_num_batched_tokens
        result.execute_model_timeout_s = plan.engine.execute_model_timeout_s
        result.step_budget_reason = plan.engine.step_reason
    for item in read_inputs(inputs, settings, stdin):
        if isinstance(item, SkippedFile):
            result.skipped_files.append(item.path)
        elif isinstance(item, BadInput):
            result.bad_inputs.append(
                {"id": item.id, "source": item.source, "line": item.line, "kind": item.kind, "message": item.message}
            )
        elif isinstance(item, Document):
            result.documents += 1
            try:
                prepared = pipeline.prepare(item)
            except ContextOverflowError as exc:
                result.bad_inputs.append(
                    {"id": item.id, "source": item.source, "kind": "context_overflow", "message": str(exc)}
                )
                continue
            tokens = [len(p.prompt_ids) for p in prepared]
            chunks = len({p.chunk.index for p in prepared})
            result.chunks += chunks
            result.requests += len(prepared)
            result.prompt_tokens += sum(tokens)
            result.largest_prompt_tokens = max([result.largest_prompt_tokens, *tokens])
            entry: dict[str, Any] = {
                "id": item.id,
                "chunks": chunks,
                "requests": len(prepared),
                "prompt_tokens": sum(tokens),
            }
            if item.pages is not None:
                entry["pages"] = len(item.pages)
                result.pages += len(item.pages)
            result.per_document.append(entry)
    return result
