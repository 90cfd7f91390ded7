"""Configuration: documented defaults, enforced sampling, precedence, validation, entity types."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from vllm_extract.cli.exit_codes import for_error
from vllm_extract.config import (
    DEFAULT_ENTITY_TYPES,
    EntityType,
    ExtractionConfig,
    Settings,
    VLLMConfig,
    load_entity_types_file,
    load_settings,
    parse_entity_types,
)
from vllm_extract.exceptions import ConfigurationError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _settings(tmp_path: Path, toml: str | None = None, env: dict | None = None, **overrides: object) -> Settings:
    path = None
    if toml is not None:
        path = tmp_path / "cfg.toml"
        path.write_text(toml, encoding="utf-8")
    return load_settings(path, env=env or {}, overrides=overrides, cwd=tmp_path)


def test_documented_defaults() -> None:
    cfg = VLLMConfig()
    assert cfg.model == "Qwen/Qwen3-4B-Instruct-2507"
    assert cfg.max_model_len == 32768
    assert cfg.max_prompt_tokens == 28000
    assert cfg.max_completion_tokens == 4096
    assert cfg.gpu_memory_utilization == 0.85
    assert cfg.tensor_parallel_size == 1
    assert cfg.seed == 42
    assert cfg.default_temperature == 0.0
    assert cfg.max_num_seqs == 256
    assert cfg.max_num_batched_tokens == 16384
    assert cfg.gpu_memory_threshold == 0.90
    assert cfg.base_url is None
    assert cfg.enable_prefix_caching is True
    assert (cfg.dtype, cfg.execute_model_timeout) == ("auto", None)  # chosen from the machine by the plan
    assert cfg.served_model == cfg.model
    ext = ExtractionConfig()
    assert ext.entity_types == DEFAULT_ENTITY_TYPES
    assert ext.chunk_tokens == 12000
    assert ext.chunk_overlap == 0.10
    assert ext.globs == ("*.txt", "*.md", "*.pdf", "*.docx", "*.html", "*.htm")


def test_load_settings_without_sources_gives_defaults(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings.vllm == VLLMConfig()
    assert settings.extraction == ExtractionConfig()


@pytest.mark.parametrize(("temperature", "seed"), [(0.7, 42), (0.0, 7), (1.0, 0)])
def test_temperature_and_seed_are_enforced(caplog: pytest.LogCaptureFixture, temperature: float, seed: int) -> None:
    with caplog.at_level(logging.WARNING, logger="vllm_extract.config"):
        cfg = VLLMConfig(default_temperature=temperature, seed=seed)
    assert (cfg.default_temperature, cfg.seed) == (0.0, 42)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1 and "enforces temperature 0.0 and seed 42" in messages[0]


def test_no_warning_for_enforced_values(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vllm_extract.config"):
        VLLMConfig(default_temperature=0.0, seed=42)
    assert caplog.records == []


def test_temperature_and_seed_from_sources_are_enforced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vllm_extract.config"):
        settings = _settings(tmp_path, "seed = 1\n", env={"VLLM_EXTRACT_DEFAULT_TEMPERATURE": "0.9"})
    assert (settings.vllm.default_temperature, settings.vllm.seed) == (0.0, 42)
    assert caplog.records


def test_precedence_file_env_overrides(tmp_path: Path) -> None:
    toml = """
max_num_seqs = 8
[vllm]
max_model_len = 4096
max_completion_tokens = 256
gpu_memory_utilization = 0.5
[extract]
chunk_tokens = 1000
chunk_overlap = 0.2
"""
    env = {
        "VLLM_EXTRACT_MAX_MODEL_LEN": "8192",
        "VLLM_EXTRACT_CHUNK_TOKENS": "2000",
        "VLLM_EXTRACT_GPU_MEMORY_UTILIZATION": "0.6",
        "VLLM_EXTRACT_ENABLE_PREFIX_CACHING": "false",
        "VLLM_EXTRACT_CACHE": "/somewhere",  # not a setting, ignored
        "OTHER_VAR": "x",
    }
    settings = _settings(tmp_path, toml, env, chunk_tokens=3000, max_num_seqs=None)
    v, e = settings.vllm, settings.extraction
    assert v.max_model_len == 8192  # env beats file
    assert isinstance(v.max_model_len, int)
    assert v.max_completion_tokens == 256  # file beats default
    assert v.max_num_seqs == 8  # a None override does not count
    assert v.gpu_memory_utilization == 0.6
    assert v.enable_prefix_caching is False
    assert e.chunk_tokens == 3000  # override beats env
    assert e.chunk_overlap == 0.2
    assert v.max_prompt_tokens == 28000  # untouched default


def test_env_values_are_typed(tmp_path: Path) -> None:
    env = {
        "VLLM_EXTRACT_CHUNK_TOKENS": "2000",
        "VLLM_EXTRACT_MAX_RETRIES": "0",
        "VLLM_EXTRACT_HTTP_TIMEOUT": "12.5",
        "VLLM_EXTRACT_CHUNK_OVERLAP": "0.25",
        "VLLM_EXTRACT_KV_CACHE_MEMORY_BYTES": "1073741824",
        "VLLM_EXTRACT_ENFORCE_EAGER": "auto",
        "VLLM_EXTRACT_SERVERS": "http://a:8000/, http://b:8000",
        "VLLM_EXTRACT_GLOBS": "*.txt,*.html",
        "VLLM_EXTRACT_BASE_URL": "http://a:8000",
    }
    settings = _settings(tmp_path, env=env)
    v, e = settings.vllm, settings.extraction
    assert e.chunk_tokens == 2000 and type(e.chunk_tokens) is int
    assert v.max_retries == 0
    assert v.http_timeout == 12.5
    assert e.chunk_overlap == 0.25
    assert v.kv_cache_memory_bytes == 1 << 30
    assert v.enforce_eager is None
    assert v.servers == ["http://a:8000/", "http://b:8000"]
    assert v.server_urls() == ["http://a:8000", "http://b:8000"]
    # the OpenAI clients' base-URL form names the same server (it used to become /v1/v1/models)
    both = dataclasses.replace(v, base_url="http://a:8000/v1", servers=["http://a:8000/v1/", "http://b:8000/v1x"])
    assert both.server_urls() == ["http://a:8000", "http://b:8000/v1x"]
    assert e.globs == ("*.txt", "*.html")
    assert settings.as_dict()["globs"] == ["*.txt", "*.html"]


def test_overrides_as_strings_are_typed(tmp_path: Path) -> None:
    settings = _settings(tmp_path, max_num_seqs="32", gpu_memory_threshold="0.8", keep_ungrounded="yes")
    assert settings.vllm.max_num_seqs == 32
    assert settings.vllm.gpu_memory_threshold == 0.8
    assert settings.extraction.keep_ungrounded is True


def test_config_file_found_in_cwd(tmp_path: Path) -> None:
    (tmp_path / "vllm-extract.toml").write_text("[vllm]\nconcurrency = 3\n", encoding="utf-8")
    assert load_settings(env={}, cwd=tmp_path).vllm.concurrency == 3


def test_example_config_file_loads() -> None:
    settings = load_settings(EXAMPLES / "vllm-extract.toml", env={})
    assert isinstance(settings, Settings)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        _settings(tmp_path, "[vllm]\nmax_model_length = 100\n")
    assert "max_model_length" in str(info.value)
    assert for_error(info.value) == 2
    with pytest.raises(ConfigurationError, match="colour"):
        _settings(tmp_path, 'colour = "red"\n')


def test_a_removed_key_names_what_replaced_it(tmp_path: Path) -> None:
    """0.1's window_chunks is gone with the windows (issue 20): an old config file is told why."""
    with pytest.raises(ConfigurationError, match=r"window_chunks.*gone.*queue_requests.*reorder_window"):
        _settings(tmp_path, "[extract]\nwindow_chunks = 64\n")


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        _settings(tmp_path, "max_model_len = = 3\n")


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_settings(tmp_path / "nope.toml", env={})


def test_unknown_env_var(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        _settings(tmp_path, env={"VLLM_EXTRACT_CHUNK_SIZE": "5"})
    assert "VLLM_EXTRACT_CHUNK_SIZE" in str(info.value)


def test_unknown_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="bogus"):
        _settings(tmp_path, bogus=1)


@pytest.mark.parametrize(
    ("toml", "env", "key"),
    [
        (None, {"VLLM_EXTRACT_CHUNK_TOKENS": "abc"}, "chunk_tokens"),
        (None, {"VLLM_EXTRACT_MAX_MODEL_LEN": "4k"}, "max_model_len"),
        (None, {"VLLM_EXTRACT_GPU_MEMORY_UTILIZATION": "high"}, "gpu_memory_utilization"),
        (None, {"VLLM_EXTRACT_GPU_MEMORY_UTILIZATION": "1.5"}, "gpu_memory_utilization"),
        (None, {"VLLM_EXTRACT_ENABLE_PREFIX_CACHING": "maybe"}, "enable_prefix_caching"),
        ("gpu_memory_utilization = 1.5\n", None, "gpu_memory_utilization"),
        ("gpu_memory_utilization = 0\n", None, "gpu_memory_utilization"),
        ('chunk_tokens = "many"\n', None, "chunk_tokens"),
        ("chunk_tokens = 10\n", None, "chunk_tokens"),
        ("max_model_len = true\n", None, "max_model_len"),
        ("chunk_overlap = 0.9\n", None, "chunk_overlap"),
        ("max_retries = -1\n", None, "max_retries"),
        ('kv_cache_dtype = "int3"\n', None, "kv_cache_dtype"),
        ("max_num_seqs = 0\n", None, "max_num_seqs"),
        ("max_model_len = [4096]\n", None, "max_model_len"),
        ("max_model_len = 4096.5\n", None, "max_model_len"),
        ("[extract]\nchunk_overlap = [0.1]\n", None, "chunk_overlap"),
        ("model = 5\n", None, "model"),
        ('enable_prefix_caching = "perhaps"\n', None, "enable_prefix_caching"),
        ("enable_prefix_caching = 1\n", None, "enable_prefix_caching"),
        ('[extract]\nid_field = ""\n', None, "id_field"),
        (None, {"VLLM_EXTRACT_TEXT_FIELD": " "}, "text_field"),
        ('[extract]\nid_field = "body"\ntext_field = "body"\n', None, "text_field"),
        ('[extract]\nglobs = [""]\n', None, "globs"),
        # Issue 21: accepted, and then every request "timed out" (exit 3, "no vLLM server answered").
        ("http_timeout = -1\n", None, "http_timeout"),
        ("http_timeout = 0\n", None, "http_timeout"),
        ("http_timeout = nan\n", None, "http_timeout"),
        # Accepted with a warning ("enforces temperature 0.0"), as if a number: a typo is refused.
        ("default_temperature = nan\n", None, "default_temperature"),
        ("default_temperature = inf\n", None, "default_temperature"),
        (None, {"VLLM_EXTRACT_DEFAULT_TEMPERATURE": "-inf"}, "default_temperature"),
        (None, {"VLLM_EXTRACT_HTTP_TIMEOUT": "0"}, "http_timeout"),
        ("max_engine_restarts = -1\n", None, "max_engine_restarts"),
        ("gpu_id = -1\n", None, "gpu_id"),
        ('dtype = "int4"\n', None, "dtype"),
        (None, {"VLLM_EXTRACT_EXECUTE_MODEL_TIMEOUT": "0"}, "execute_model_timeout"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, toml: str | None, env: dict | None, key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        _settings(tmp_path, toml, env)
    assert key in str(info.value)


# --- entity types ----------------------------------------------------------------------------


def test_entity_types_from_string(tmp_path: Path) -> None:
    assert parse_entity_types("A,b, court case ,,") == (
        EntityType("A"),
        EntityType("B"),
        EntityType("COURT_CASE"),
    )
    settings = _settings(tmp_path, env={"VLLM_EXTRACT_ENTITY_TYPES": "person,money"})
    assert settings.extraction.type_names == ["PERSON", "MONEY"]


def test_entity_types_from_list_and_table(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 'entity_types = ["person", {name = "money", description = "Cash."}]\n')
    assert settings.extraction.entity_types == (EntityType("PERSON"), EntityType("MONEY", "Cash."))
    settings = _settings(tmp_path, '[extract.entity_types]\nPERSON = "A human."\nDATE = "A day."\n')
    assert settings.extraction.entity_types == (
        EntityType("PERSON", "A human."),
        EntityType("DATE", "A day."),
    )
    settings = _settings(tmp_path, entity_types=["x"])
    assert settings.extraction.entity_types == (EntityType("X"),)


def test_entity_types_invalid(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="entity_types"):
        _settings(tmp_path, "entity_types = [1, 2]\n")
    with pytest.raises(ConfigurationError, match="entity_types"):
        _settings(tmp_path, env={"VLLM_EXTRACT_ENTITY_TYPES": " , "})
    with pytest.raises(ConfigurationError, match="repeat"):
        _settings(tmp_path, entity_types="person,PERSON")


def test_load_entity_types_file_json_example() -> None:
    types = load_entity_types_file(EXAMPLES / "types.json")
    expected = json.loads((EXAMPLES / "types.json").read_text(encoding="utf-8"))
    assert types == tuple(EntityType(name, description) for name, description in expected.items())
    assert types[0] == EntityType("PARTY", "A party to a case or contract")


def test_load_entity_types_file_formats(tmp_path: Path) -> None:
    as_list = tmp_path / "types.json"
    as_list.write_text(json.dumps([{"name": "judge", "description": "A judge."}, "court"]), encoding="utf-8")
    assert load_entity_types_file(as_list) == (EntityType("JUDGE", "A judge."), EntityType("COURT"))
    as_toml = tmp_path / "types.toml"
    as_toml.write_text('[types]\nSTATUTE = "A law."\nMONEY = "Cash."\n', encoding="utf-8")
    assert load_entity_types_file(as_toml) == (EntityType("STATUTE", "A law."), EntityType("MONEY", "Cash."))
    flat_toml = tmp_path / "flat.toml"
    flat_toml.write_text('LOCATION = "A place."\n', encoding="utf-8")
    assert load_entity_types_file(flat_toml) == (EntityType("LOCATION", "A place."),)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("bad.json", "{not json", "not valid"),
        ("num.json", "42", "not valid"),
        ("empty.json", "{}", "no entity types"),
        ("bad.toml", "x = = 1", "not valid"),
    ],
)
def test_load_entity_types_file_errors(tmp_path: Path, name: str, content: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=match):
        load_entity_types_file(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_entity_types_file(tmp_path / "missing.json")


def test_tiny_model_gets_small_budgets_unless_set(tmp_path: Path) -> None:
    tiny = load_settings(env={}, overrides={"model": "tiny"}, cwd=tmp_path)
    assert tiny.vllm.max_completion_tokens == 256 and tiny.extraction.chunk_tokens == 2000
    chosen = load_settings(env={"VLLM_EXTRACT_MAX_COMPLETION_TOKENS": "64"}, overrides={"model": "tiny"}, cwd=tmp_path)
    assert chosen.vllm.max_completion_tokens == 64
    real = load_settings(env={}, overrides={"model": "Qwen/Qwen3-4B-Instruct-2507"}, cwd=tmp_path)
    assert real.vllm.max_completion_tokens == 4096 and real.extraction.chunk_tokens == 12000


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("base_url = 8000", "expected str, got int 8000"),  # issue 13: was a Python traceback (rstrip)
        ("servers = 5", "expected a list of strings, got int 5"),
        ('servers = ["http://127.0.0.1:8000", 3]', "expected a list of strings"),
        ('globs = "*.txt"', None),  # a string is still the comma-separated form
        ("kv_cache_memory_bytes = true", "expected a number, got a boolean"),
        ('enforce_eager = "sometimes"', "expected true/false"),
        ("api_key = 12", "expected str, got int 12"),
    ],
)
def test_config_file_values_are_type_checked(tmp_path, toml, expected):
    cfg = tmp_path / "vllm-extract.toml"
    cfg.write_text(toml + "\n")
    if expected is None:
        load_settings(cfg, env={})
        return
    with pytest.raises(ConfigurationError, match=expected) as info:
        load_settings(cfg, env={})
    assert str(cfg) in str(info.value)
