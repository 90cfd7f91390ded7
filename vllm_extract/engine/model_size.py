"""A local model's size without torch: its parameter count (safetensors headers, else ``config.json``
dimensions) and its attention width, for the step-budget estimate (``engine.hardware``). Only
headers and JSON are read, never the weights; nothing here raises for unreadable or malformed files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

__all__ = ["model_attention_width", "model_parameters"]

logger = logging.getLogger(__name__)

_MAX_SAFETENSORS_HEADER: Final = 100 * 1024 * 1024  # the safetensors format's own limit




def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _text_config(folder: Path) -> dict[str, Any] | None:
    """``config.json``, or its ``text_config`` when the top level lacks the layer count (multimodal)."""
    config = _read_json(folder / "config.json")
    if not isinstance(config, dict):
        return None
    inner = config.get("text_config")
    if not _first_int(config, "num_hidden_layers", "n_layer", "num_layers") and isinstance(inner, dict):
        merged = dict(config)
        merged.update(inner)
        return merged
    return config


def _first_int(config: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _safetensors_elements(path: Path) -> int | None:
    """Elements stored in one safetensors file, from its header: 8 bytes little-endian header length, then
    that many bytes of JSON mapping tensor names to ``{"dtype", "shape", "data_offsets"}``."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) != 8:
                return None
            (length,) = struct.unpack("<Q", head)
            if length > min(_MAX_SAFETENSORS_HEADER, size - 8):
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            return None
        total += math.prod(shape)
    return total


def _safetensors_files(folder: Path) -> list[Path] | None:
    """The checkpoint's safetensors files: those named by ``model.safetensors.index.json`` when present
    (``None`` if one is missing), else ``model.safetensors``, else every ``*.safetensors`` file."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = _read_json(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict):
            return None
        files = [folder / name for name in sorted({str(v) for v in weight_map.values()})]
        return files if all(f.is_file() for f in files) else None
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    return sorted(folder.glob("*.safetensors"))


# Model types whose MLP has two matrices (no gate); others are counted with three (gated, as Llama).
_UNGATED_MLP: Final = frozenset({"gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi", "starcoder2"})


def _parameters_from_config(config: Mapping[str, Any]) -> int | None:
    hidden = _first_int(config, "hidden_size", "n_embd", "d_model")
    layers = _first_int(config, "num_hidden_layers", "n_layer", "num_layers")
    vocab = _first_int(config, "vocab_size")
    if hidden is None or layers is None or vocab is None:
        return None
    heads = _first_int(config, "num_attention_heads", "n_head") or max(1, hidden // 64)
    kv_heads = _first_int(config, "num_key_value_heads") or heads
    head_dim = _first_int(config, "head_dim") or hidden // heads
    intermediate = _first_int(config, "intermediate_size", "n_inner", "ffn_dim") or 4 * hidden
    experts = _first_int(config, "num_local_experts", "num_experts", "n_routed_experts") or 1
    expert_intermediate = _first_int(config, "moe_intermediate_size") or intermediate
    matrices = 2 if config.get("model_type") in _UNGATED_MLP else 3
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    mlp = matrices * hidden * (expert_intermediate * experts if experts > 1 else intermediate)
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") is True else 2)
    return embeddings + layers * (attention + mlp)


def model_parameters(model_path: str | os.PathLike[str]) -> int | None:
    """The model's parameter count, from a local folder, without torch.

    First the safetensors headers (``_safetensors_files``): the sum over tensors of the product of their
    shapes; only the headers are read (a few KB), never the weights. Quantized checkpoints (``config.json``
    has ``quantization_config``) pack several weights per stored element, so for them, and when there are
    no readable safetensors files, the count comes from ``config.json`` dimensions: embeddings (once when
    ``tie_word_embeddings`` is true), per layer the q/k/v/o projections (grouped-query heads counted) and
    the MLP (3 matrices, 2 for GPT-2-style models; MoE counts all experts, which overstates the compute
    per token: conservative). Norms and biases are left out. ``None`` when the folder does not exist or
    neither source gives a count; never raises for unreadable or malformed files.
    """
    folder = Path(model_path)
    if not folder.is_dir():
        return None
    config = _text_config(folder)
    quantized = config is not None and "quantization_config" in config
    if not quantized:
        files = _safetensors_files(folder)
        if files:
            counts = [_safetensors_elements(path) for path in files]
            if all(count is not None for count in counts):
                total = sum(count for count in counts if count is not None)
                if total > 0:
                    return total
            logger.debug("unreadable safetensors header in %s; counting parameters from config.json", folder)
    return _parameters_from_config(config) if config is not None else None


def model_attention_width(model_path: str | os.PathLike[str]) -> int | None:
    """Layers x query heads x head size, from ``config.json``: attention costs about 4 FLOPs per unit of
    this per token per context token (QK^T and AV). For SmolLM2-135M: 30 x 9 x 64 = 17,280. ``None`` when
    the folder or the dimensions are missing."""
    folder = Path(model_path)
    config = _text_config(folder) if folder.is_dir() else None
    if config is None:
        return None
    layers = _first_int(config, "num_hidden_layers", "n_layer", "num_layers")
    hidden = _first_int(config, "hidden_size", "n_embd", "d_model")
    heads = _first_int(config, "num_attention_heads", "n_head")
    if layers is None or (hidden is None and heads is None):
        return None
    head_dim = _first_int(config, "head_dim")
    if heads is not None and head_dim is not None:
        return layers * heads * head_dim
    return layers * hidden if hidden is not None else None
