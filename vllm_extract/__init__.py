"""vllm-extract: batch entity extraction over documents with vLLM's in-process Python API.

    from vllm_extract import DirectVLLMClient, VLLMConfig, VLLMRequest

The heavy engines (vllm, torch, pynvml) are imported only when a client connects or a GPU is read.
"""

from __future__ import annotations

from .clients.base import VLLMClientInterface, VLLMClientType, VLLMRequest, VLLMResponse
from .clients.direct import DirectVLLMClient
from .clients.factory import VLLMClientFactory, get_client_for_entity_extraction
from .clients.http import HTTPVLLMClient
from .config import EntityType, ExtractionConfig, Settings, VLLMConfig, load_settings
from .exceptions import (
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
from .extract.alignment import Entity
from .gpu import GPUMonitor, GPUStats
from .output import OutputWriter, read_records
from .pipeline import ExtractionPipeline, RunSummary
from .readers import BadInput, Document, iter_documents
from .runner import RunOptions, RunResult, plan_job, run_job
from .tokens import TokenEstimator

__version__ = "0.1.0"

__all__ = [
    "BadInput",
    "ConfigurationError",
    "ConnectionError",
    "ContextOverflowError",
    "DirectVLLMClient",
    "Document",
    "Entity",
    "EntityType",
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
    "RunOptions",
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
    "get_client_for_entity_extraction",
    "iter_documents",
    "load_settings",
    "plan_job",
    "read_records",
    "run_job",
]
