"""Clients that generate: in-process vLLM (direct) and OpenAI-compatible servers (HTTP)."""

from .base import VLLMClientInterface, VLLMClientType, VLLMRequest, VLLMResponse

__all__ = ["VLLMClientInterface", "VLLMClientType", "VLLMRequest", "VLLMResponse"]
