"""vllm-extract: batch entity extraction over documents with vLLM's in-process Python API.

    from vllm_extract import Settings, VLLMConfig, run_job, plan_job, evaluate

The data flow, one folder a stage: ``readers`` (inputs of every format -> documents),
``extract`` (tokens, chunks, prompts, grammars, parsing, alignment), ``clients`` (transports:
in-process vLLM, HTTP, Ray), ``output`` (records, writer, resume, merge, report). ``run`` drives a
job: the plan (model, budgets, decoding, fingerprint: decided once), the pipeline, the runner.
``engine`` holds the model, the local server and the GPUs; ``eval`` scores against gold spans,
``review`` makes an HTML page of the results, ``cli`` is the command line. The leaf modules
(``_version``, ``exceptions``, ``config``, ``events``) import nothing of the package; each layer
imports only those below it (``tests/test_layering.py`` checks it).

This file is the public API and nothing else: every name here is defined in the module named by
its import. The heavy engines (vllm, torch, pynvml, ray) are imported only when a client connects
or a GPU is read, and ``import vllm_extract`` loads neither Typer nor rich.
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
from .run.runner import RunOptions, RunOutcome, RunResult, open_run, run_job

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
    "RunOutcome",
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
