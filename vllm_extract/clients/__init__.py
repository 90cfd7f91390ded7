"""Clients that generate: an engine process here (direct), engine replicas on Ray, OpenAI-compatible
servers (HTTP); `factory` opens them (the one path)."""

from .base import VLLMClientInterface, VLLMClientType, VLLMRequest, VLLMResponse

__all__ = ["VLLMClientInterface", "VLLMClientType", "VLLMRequest", "VLLMResponse"]
