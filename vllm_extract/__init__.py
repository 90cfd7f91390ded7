"""vllm-extract: batch entity extraction over documents with vLLM's in-process Python API.

    from vllm_extract import Settings, VLLMConfig, run_job, plan_job, evaluate

The data flow, one folder a stage: ``readers`` (inputs of every format -> documents),
``plan`` (model, budgets, decoding, fingerprint: decided once), ``extract`` (chunks, prompts,
grammars, parsing, alignment), ``clients`` (transports: in-process vLLM, HTTP), ``pipeline``
(windows of native batches), ``output`` (records, writer, resume, report), ``runner`` (a whole
job), ``eval`` (scores against gold spans) and ``review`` (an HTML page of the results).

The heavy engines (vllm, torch, pynvml) are imported only when a client connects or a GPU is read.
"""

from __future__ import annotations

from ._version import __version__
from .clients.base import VLLMClientInterface, VLLMClientType, VLLMRequest, VLLMResponse
from .clients.direct import DirectVLLMClient
from .clients.factory import VLLMClientFactory, get_client_for_entity_extraction
from .clients.http import HTTPVLLMClient
from .config import EntityType, ExtractionConfig, Settings, VLLMConfig, load_settings
from .engine.gpu import GPUMonitor, GPUStats
from .eval import EvalResult, evaluate, load_gold, load_predictions
from .exceptions import (
    BudgetError,
    ConfigurationError,
    ConnectionError,
    ContextOverflowError,
    GenerationError,
    GPUMemoryError,
    GPUMonitorError,
    InputError,
    LockHeldError,
    ModelNotLoadedError,
    ModelPreparationError,
    OutputError,
    VLLMClientError,
)
from .extract.grounding import Entity
from .output import OutputWriter, read_records
from .readers import BadInput, Document, iter_documents
from .review import write_review
from .run.budgets import TokenEstimator
from .run.dry_run import plan_job
from .run.pipeline import ExtractionPipeline, RunSummary
from .run.plan import ResolvedModel, RunPlan, build_plan, resolve_model
from .run.runner import RunOptions, RunResult, open_run, run_job

__all__ = [
    "BadInput",
    "BudgetError",
    "ConfigurationError",
    "ConnectionError",
    "ContextOverflowError",
    "DirectVLLMClient",
    "Document",
    "Entity",
    "EntityType",
    "EvalResult",
    "ExtractionConfig",
    "ExtractionPipeline",
    "GPUMemoryError",
    "GPUMonitor",
    "GPUMonitorError",
    "GPUStats",
    "GenerationError",
    "HTTPVLLMClient",
    "InputError",
    "LockHeldError",
    "ModelNotLoadedError",
    "ModelPreparationError",
    "OutputError",
    "OutputWriter",
    "ResolvedModel",
    "RunOptions",
    "RunPlan",
    "RunResult",
    "RunSummary",
    "Settings",
    "TokenEstimator",
    "VLLMClientError",
    "VLLMClientFactory",
    "VLLMClientInterface",
    "VLLMClientType",
    "VLLMConfig",
    "VLLMRequest",
    "VLLMResponse",
    "__version__",
    "build_plan",
    "evaluate",
    "get_client_for_entity_extraction",
    "iter_documents",
    "load_gold",
    "load_predictions",
    "load_settings",
    "open_run",
    "plan_job",
    "read_records",
    "resolve_model",
    "run_job",
    "write_review",
]
