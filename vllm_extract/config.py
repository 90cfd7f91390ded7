"""Configuration: one object built once (defaults < TOML file < environment < CLI) and passed down.

``VLLMConfig`` holds engine and client settings (the documented fields of the original module);
``ExtractionConfig`` holds what to extract and how to cut documents. ``Settings`` bundles both and
is what ``load_settings`` returns. Nothing deeper in the library reads the environment.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from .exceptions import ConfigurationError

__all__ = [
    "DEFAULT_ENTITY_TYPES",
    "DEFAULT_MODEL",
    "DTYPES",
    "ENFORCED_SEED",
    "ENFORCED_TEMPERATURE",
    "ENV_PREFIX",
    "EntityType",
    "ExtractionConfig",
    "Settings",
    "VLLMConfig",
    "load_settings",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen3-4B-Instruct-2507"
ENFORCED_TEMPERATURE = 0.0
ENFORCED_SEED = 42
# The KV cache the CPU backend gets when kv_cache_memory_bytes is unset (vLLM's GPU default, a share
# of device memory, would take host RAM); the pre-flight checks this much is free, plus the weights.
CPU_DEFAULT_KV_CACHE_BYTES = 2 << 30
# The dtype values vLLM's ``LLM(dtype=...)`` accepts (its ModelDType), aliases included.
DTYPES = ("auto", "bfloat16", "float32", "float", "float16", "half")
ENV_PREFIX = "VLLM_EXTRACT_"
CONFIG_FILE_NAME = "vllm-extract.toml"
# Defaults for `--model tiny` (only where no file, variable or flag sets the key).
TINY_DEFAULTS: dict[str, Any] = {"max_completion_tokens": 256, "chunk_tokens": 2000}


@dataclass(frozen=True, slots=True)
class EntityType:
    """One entity label the model may emit, with the description shown to it."""

    name: str
    description: str = ""


DEFAULT_ENTITY_TYPES: tuple[EntityType, ...] = (
    EntityType("PERSON", "A named individual who is not a judge or a party role."),
    EntityType("ORGANIZATION", "A company, agency, firm, association or other named body."),
    EntityType("COURT", "A named court or tribunal."),
    EntityType("JUDGE", "A judge or justice named in the text."),
    EntityType("PARTY", "A party to a case or contract (plaintiff, defendant, buyer, seller, ...)."),
    EntityType("CASE_CITATION", "A citation to a court decision, e.g. 'Smith v. Jones, 512 U.S. 1 (1994)'."),
    EntityType("STATUTE", "A statute, regulation or code section, e.g. '42 U.S.C. § 1983'."),
    EntityType("DATE", "A calendar date or date expression."),
    EntityType("MONEY", "An amount of money with its currency."),
    EntityType("LOCATION", "A city, state, country, address or other place."),
)


@dataclass
class VLLMConfig:
    """Engine and client settings. Field names and defaults follow the documented API."""

    model: str = DEFAULT_MODEL
    model_id: str | None = None
    base_url: str | None = None
    servers: list[str] = field(default_factory=list)
    api_key: str | None = None
    max_model_len: int = 32768
    max_prompt_tokens: int = 28000
    max_completion_tokens: int = 4096
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1
    # Engine replicas, each on tensor_parallel_size GPUs. vLLM 0.32's offline LLM refuses
    # data_parallel_size > 1 in one process, so more than 1 runs that many replicas on Ray.
    data_parallel_size: int = 1
    seed: int = ENFORCED_SEED
    default_temperature: float = ENFORCED_TEMPERATURE
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 16384
    enable_gpu_monitoring: bool = True
    gpu_memory_threshold: float = 0.90
    gpu_id: int = 0
    kv_cache_dtype: str = "auto"
    # auto: chosen from the machine by the run plan (run.plan, engine.hardware): bfloat16 on a CPU
    # with native bf16, float32 on other CPUs, vLLM's pick on GPU.
    dtype: str = "auto"
    # VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS for the engine (vLLM applies it with tensor_parallel_size > 1);
    # None: vLLM's own (300 s) or the variable as set. The plan raises it for a slow CPU.
    execute_model_timeout: int | None = None
    enforce_eager: bool | None = None
    kv_cache_memory_bytes: int | None = None
    http_timeout: float = 300.0
    concurrency: int = 16
    max_retries: int = 4
    max_engine_restarts: int = 5
    # vLLM's batch-invariant kernels (VLLM_BATCH_INVARIANT=1): results that do not depend on what
    # else shares a batch. vLLM 0.32 documents them for NVIDIA GPUs of compute capability 8.0 and
    # up (the A40 is 8.6), as beta; they cannot be tested on the CPU build.
    batch_invariant: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.default_temperature):  # nan/inf: a typo, not a temperature to warn about
            raise ConfigurationError(f"default_temperature must be a finite number, got {self.default_temperature}")
        if self.default_temperature != ENFORCED_TEMPERATURE or self.seed != ENFORCED_SEED:
            logger.warning(
                "temperature %s / seed %s requested; vllm-extract enforces temperature %s and seed %s "
                "so runs are reproducible",
                self.default_temperature,
                self.seed,
                ENFORCED_TEMPERATURE,
                ENFORCED_SEED,
            )
            self.default_temperature = ENFORCED_TEMPERATURE
            self.seed = ENFORCED_SEED
        _check_range("gpu_memory_utilization", self.gpu_memory_utilization, 0.0, 1.0, low_open=True)
        _check_range("gpu_memory_threshold", self.gpu_memory_threshold, 0.0, 1.0, low_open=True)
        for name in (
            "max_model_len",
            "max_prompt_tokens",
            "max_completion_tokens",
            "tensor_parallel_size",
            "data_parallel_size",
            "max_num_seqs",
            "max_num_batched_tokens",
            "concurrency",
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_retries", "max_engine_restarts", "gpu_id"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if not (math.isfinite(self.http_timeout) and self.http_timeout > 0):
            raise ConfigurationError(
                f"http_timeout must be a number of seconds over 0, got {self.http_timeout}",
                hint="e.g. http_timeout = 300 (each HTTP request's limit)",
            )
        if self.dtype.strip().lower() not in DTYPES:
            raise ConfigurationError(
                f"dtype {self.dtype!r} is not a dtype vLLM accepts", hint=f"use one of: {', '.join(DTYPES)}"
            )
        if self.execute_model_timeout is not None and self.execute_model_timeout < 1:
            raise ConfigurationError(
                f"execute_model_timeout must be at least 1 second, got {self.execute_model_timeout}"
            )
        if self.kv_cache_dtype not in ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16"):
            raise ConfigurationError(
                f"kv_cache_dtype {self.kv_cache_dtype!r} is not supported",
                hint="use auto, fp8, fp8_e4m3, fp8_e5m2 or bfloat16",
            )

    @property
    def served_model(self) -> str:
        """The model name sent to an HTTP server (model_id when set, else model)."""
        return self.model_id or self.model

    def server_urls(self) -> list[str]:
        """base_url followed by the extra servers: each the server's root, without a trailing slash
        or ``/v1`` (the OpenAI clients' base-URL form, ``http://host:8000/v1``, is accepted: the
        client adds ``/v1/...`` and ``/health`` itself), without duplicates."""
        urls: list[str] = []
        for url in [self.base_url, *self.servers]:
            root = (url or "").rstrip("/").removesuffix("/v1").rstrip("/")
            if root and root not in urls:
                urls.append(root)
        return urls


STRATEGIES = ("all-types", "per-type")
MAX_PASSES = 5  # each pass costs the prompt again (prefix cached) and a full answer


@dataclass
class ExtractionConfig:
    """What to extract, how documents are cut into prompts and how the model is asked.

    ``strategy``: ``all-types`` (one request per chunk listing every type) or ``per-type`` (one
    request per chunk and type, or group of types in ``type_groups``, each written ``A+B``).
    ``passes``: 1 to ``MAX_PASSES`` answers per request, each later pass asking for the entities
    not yet listed. ``examples_file``: a gold JSONL file (the ``eval`` format) from which up to
    ``max_examples`` short documents or windows become worked examples in the instructions.
    """

    entity_types: tuple[EntityType, ...] = DEFAULT_ENTITY_TYPES
    chunk_tokens: int = 12000
    chunk_overlap: float = 0.10
    max_entities_per_chunk: int = 100
    max_entity_chars: int = 200
    queue_requests: int = 0
    reorder_window: int = 256
    keep_ungrounded: bool = False
    retry_truncated: bool = True
    id_field: str = "id"
    text_field: str = "text"
    globs: tuple[str, ...] = ("*.txt", "*.md", "*.pdf", "*.docx", "*.html", "*.htm")
    max_line_bytes: int = 64 * 1024 * 1024
    decoding: str = "grounded"
    mentions: str = "listed"
    strategy: str = "all-types"
    type_groups: tuple[str, ...] = ()
    passes: int = 1
    examples_file: str | None = None
    max_examples: int = 2

    def __post_init__(self) -> None:
        if not self.entity_types:
            raise ConfigurationError("entity_types is empty", hint="give at least one type, e.g. --types PERSON")
        names = [t.name for t in self.entity_types]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"entity type names repeat: {names}")
        if self.chunk_tokens < 64:
            raise ConfigurationError(f"chunk_tokens must be at least 64, got {self.chunk_tokens}")
        _check_range("chunk_overlap", self.chunk_overlap, 0.0, 0.5)
        if self.decoding not in ("grounded", "schema"):
            raise ConfigurationError(f"decoding must be grounded or schema, got {self.decoding!r}")
        if self.mentions not in ("listed", "all"):
            raise ConfigurationError(f"mentions must be listed or all, got {self.mentions!r}")
        for name in ("id_field", "text_field"):
            if not getattr(self, name).strip():
                raise ConfigurationError(f"{name} is empty", hint=f"name a JSONL field, e.g. {name} = {name[:-6]!r}")
        if self.id_field == self.text_field:
            raise ConfigurationError(
                f"id_field and text_field are both {self.id_field!r}", hint="name two different fields"
            )
        if not self.globs or not all(g.strip() for g in self.globs):
            raise ConfigurationError(
                f"globs must be non-empty patterns, got {list(self.globs)}", hint="e.g. --glob '*.txt'"
            )
        if self.queue_requests < 0:
            raise ConfigurationError(f"queue_requests must be 0 (automatic) or more, got {self.queue_requests}")
        if self.strategy not in STRATEGIES:
            raise ConfigurationError(f"strategy must be all-types or per-type, got {self.strategy!r}")
        if not 1 <= self.passes <= MAX_PASSES:
            raise ConfigurationError(f"passes must be 1 to {MAX_PASSES}, got {self.passes}")
        if self.max_examples < 0:
            raise ConfigurationError(f"max_examples must be 0 or more, got {self.max_examples}")
        if self.type_groups and self.strategy != "per-type":
            raise ConfigurationError(
                "type_groups is set but strategy is all-types (every type is asked at once)",
                hint="add --strategy per-type, or drop --type-groups",
            )
        self.questions()  # an unknown or repeated type in type_groups is an error now, not at the run
        for name in ("max_entities_per_chunk", "max_entity_chars", "reorder_window", "max_line_bytes"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def type_names(self) -> list[str]:
        return [t.name for t in self.entity_types]

    def questions(self) -> list[tuple[str, ...]]:
        """The groups of types asked about together, one request per chunk each: every type at once
        for ``all-types``; for ``per-type``, each group of ``type_groups`` (written ``A+B``) and
        every other type alone, in the order of ``entity_types``. Raises ``ConfigurationError`` for
        a group naming an unknown type or a type in two groups."""
        names = self.type_names
        if self.strategy != "per-type":
            return [tuple(names)]
        grouped: dict[str, tuple[str, ...]] = {}
        for raw in self.type_groups:
            group = tuple(part.strip() for part in raw.split("+") if part.strip())
            for name in group:
                if name not in names:
                    raise ConfigurationError(
                        f"type_groups names {name!r}, which is not an entity type", hint=f"types: {', '.join(names)}"
                    )
                if name in grouped:
                    raise ConfigurationError(f"type_groups puts {name!r} in two groups")
                grouped[name] = group
        questions: list[tuple[str, ...]] = []
        for name in names:
            group = grouped.get(name, (name,))
            ordered = tuple(n for n in names if n in group)
            if ordered not in questions:
                questions.append(ordered)
        return questions


@dataclass
class Settings:
    """Everything a run needs: engine/client settings and extraction settings."""

    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)

    def as_dict(self) -> dict[str, Any]:
        """Flat view (one key per setting) used by `config show` and run reports."""
        out: dict[str, Any] = {}
        for section in (self.vllm, self.extraction):
            for f in fields(section):
                value = getattr(section, f.name)
                if f.name == "entity_types":
                    value = [{"name": t.name, "description": t.description} for t in value]
                elif f.name == "api_key" and value:
                    value = "***"
                elif isinstance(value, tuple):
                    value = list(value)
                out[f.name] = value
        return out


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigurationError(f"{name} must be in {bracket}{low}, {high}], got {value}")


_SECTIONS: dict[str, type] = {f.name: VLLMConfig for f in fields(VLLMConfig)} | {
    f.name: ExtractionConfig for f in fields(ExtractionConfig)
}


def known_keys() -> list[str]:
    return sorted(_SECTIONS)


def _coerce(key: str, raw: Any, source: str) -> Any:
    """Turn a TOML/env/CLI value into the field's type, or raise ConfigurationError naming the key."""
    cls = _SECTIONS[key]
    annotation = get_type_hints(cls)[key]
    # str(int) is "<class 'int'>": use the bare name so the checks below see "int"/"float".
    hint = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    try:
        if key == "entity_types":
            return parse_entity_types(raw)
        if isinstance(raw, str):
            if "bool" in hint:
                low = raw.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                if "None" in hint and low in ("", "none", "auto"):
                    return None
                raise ValueError(f"expected true/false, got {raw!r}")
            if "int" in hint and "None" in hint and raw.strip().lower() in ("", "none"):
                return None
            if hint.startswith("int") or hint == "int | None":
                return int(raw)
            if hint.startswith("float"):
                return float(raw)
            if "list" in hint or "tuple" in hint:
                items = [part.strip() for part in raw.split(",") if part.strip()]
                return tuple(items) if "tuple" in hint else items
            return raw
        base = hint.replace(" | None", "")  # TOML has no null: an optional field takes its base type
        if base.startswith(("list[", "tuple[")):
            if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
                raise ValueError(f"expected a list of strings, got {type(raw).__name__} {raw!r}")
            return tuple(raw) if base.startswith("tuple") else list(raw)
        if isinstance(raw, bool) and base in ("int", "float"):
            raise ValueError("expected a number, got a boolean")
        simple: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "str": str, "bool": bool}
        expected = simple.get(base)
        if expected is not None and not isinstance(raw, expected):
            raise ValueError(f"expected {base}, got {type(raw).__name__} {raw!r}")
        if isinstance(raw, int) and base == "float":
            return float(raw)
        return raw
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"invalid value for {key!r} from {source}: {exc}") from exc


def parse_entity_types(raw: Any) -> tuple[EntityType, ...]:
    """Entity types from 'A,B', a list of names, or a list/table of {name, description}."""
    if isinstance(raw, tuple) and all(isinstance(t, EntityType) for t in raw):
        return raw
    if isinstance(raw, str):
        raw = [part for part in raw.split(",")]
    if isinstance(raw, Mapping):
        raw = [{"name": k, "description": v} for k, v in raw.items()]
    if not isinstance(raw, list):
        raise ValueError("expected a comma-separated list, a list, or a table of name = description")
    types: list[EntityType] = []
    for item in raw:
        if isinstance(item, str):
            name, description = item, ""
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            name, description = item["name"], str(item.get("description", ""))
        else:
            raise ValueError(f"entity type {item!r} is neither a name nor {{name, description}}")
        name = name.strip().upper().replace(" ", "_")
        if not name:
            continue
        types.append(EntityType(name, description.strip()))
    return tuple(types)


def load_entity_types_file(path: Path) -> tuple[EntityType, ...]:
    """A JSON or TOML schema file: {"TYPE": "description", ...} or [{"name":..., "description":...}]."""
    import orjson

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read types file {path}: {exc.strerror}") from exc
    try:
        parsed: Any = tomllib.loads(data.decode()) if path.suffix == ".toml" else orjson.loads(data)
        if isinstance(parsed, Mapping) and "types" in parsed:
            parsed = parsed["types"]
        types = parse_entity_types(parsed)
    except (ValueError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"types file {path} is not valid: {exc}",
            hint='use JSON like {"PERSON": "a named individual", ...}',
        ) from exc
    if not types:
        raise ConfigurationError(f"types file {path} names no entity types")
    return types


def load_settings(
    config_file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Build Settings with precedence CLI overrides > environment > TOML file > defaults.

    The TOML file is ``config_file`` or, when None, ``vllm-extract.toml`` in ``cwd`` if present.
    Keys may sit at the top level or under ``[vllm]`` / ``[extract]`` tables. Unknown keys and bad
    values raise ConfigurationError naming the key and where it came from.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}

    path = config_file
    if path is None:
        candidate = (cwd or Path.cwd()) / CONFIG_FILE_NAME
        path = candidate if candidate.is_file() else None
    if path is not None:
        for key, raw in _read_toml(path).items():
            values[key] = _coerce(key, raw, f"config file {path}")

    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in (ENV_PREFIX + "CACHE", ENV_PREFIX + "CONFIG"):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in _SECTIONS:
            raise ConfigurationError(
                f"unknown environment variable {name}",
                hint=f"known settings: {', '.join(known_keys())}",
            )
        values[key] = _coerce(key, raw, f"environment variable {name}")

    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in _SECTIONS:
            raise ConfigurationError(f"unknown setting {key!r}")
        values[key] = _coerce(key, raw, "the command line")

    if values.get("model") == "tiny":
        # The embedded demo model repeats itself until max_tokens: small budgets keep a CPU run short.
        for key, value in TINY_DEFAULTS.items():
            values.setdefault(key, value)
    vllm_kwargs = {k: v for k, v in values.items() if _SECTIONS[k] is VLLMConfig}
    extract_kwargs = {k: v for k, v in values.items() if _SECTIONS[k] is ExtractionConfig}
    try:
        return Settings(VLLMConfig(**vllm_kwargs), ExtractionConfig(**extract_kwargs))
    except TypeError as exc:  # pragma: no cover - guarded by _SECTIONS
        raise ConfigurationError(str(exc)) from exc


# Settings that older versions took, with what replaced them (so an old config file gets a reason).
_REMOVED_KEYS = {
    "window_chunks": "a run streams instead of working in windows (0.2); memory is bounded by "
    "queue_requests (prepared requests) and reorder_window (finished documents waiting)",
}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from exc
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("vllm", "extract") and isinstance(value, dict):
            for sub_key, sub_value in value.items():
                flat[sub_key] = sub_value
        else:
            flat[key] = value
    for key in flat:
        if key in _REMOVED_KEYS:
            raise ConfigurationError(
                f"config file {path} sets {key!r}, which is gone: {_REMOVED_KEYS[key]}",
                hint=f"delete the {key!r} line",
            )
        if key not in _SECTIONS:
            raise ConfigurationError(
                f"unknown key {key!r} in config file {path}",
                hint=f"known settings: {', '.join(known_keys())}",
            )
    return flat


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy of settings with some flat keys changed (validated like any other source)."""
    vllm = {k: v for k, v in changes.items() if _SECTIONS.get(k) is VLLMConfig}
    extract = {k: v for k, v in changes.items() if _SECTIONS.get(k) is ExtractionConfig}
    unknown = set(changes) - set(vllm) - set(extract)
    if unknown:
        raise ConfigurationError(f"unknown setting(s): {sorted(unknown)}")
    return Settings(dataclasses.replace(settings.vllm, **vllm), dataclasses.replace(settings.extraction, **extract))
