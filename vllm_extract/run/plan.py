"""The run plan: everything a run decides before any engine loads, decided once.

``resolve_model`` is the one place that turns ``--model`` into something to load and finds its real
context. ``build_plan`` turns Settings plus that model (and, for a server, the server's context and
tokenizer) into a frozen ``RunPlan``: the budgets in force, the engine's dtype and per-step token
budget chosen for this machine (``EngineChoice``), the tokenizer that counts prompts, the decoding
mode, what the transport takes (token ids or messages), the instruction text, the schema, the chunk
size and the run's fingerprint. ``plan_for_local_model`` builds it before an engine loads,
``plan_for_client`` for a connected client. ``vllm-extract plan`` stops there; ``run`` hands the
plan to the pipeline and the client. The budget rules are written once, in ``budgets``; the
machine rules (dtype, step budget, execute-model timeout) in ``engine.hardware``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from .._version import __version__
from ..clients.base import FollowUp, VLLMClientInterface, VLLMClientType
from ..config import ExtractionConfig, Settings, VLLMConfig
from ..engine.machine_facts import MachineFacts
from ..exceptions import ConfigurationError
from ..extract.prompts import FOLLOWUP_MESSAGE, build_instructions, build_messages, build_question, build_schema
from ..extract.tokens import HFTokenizer, Tokenizer, load_tokenizer
from ..output.resume import BATCHING_PREFIX
from ..readers import InputItem, iter_documents
from . import budgets
from .examples import ChosenExample, load_examples
from .machine import EngineChoice, choose_engine, given_engine

__all__ = [
    "BATCHING_PREFIX",
    "DECODING_MODES",
    "Question",
    "ResolvedModel",
    "RunPlan",
    "batching_parts",
    "build_plan",
    "plan_for_client",
    "plan_for_local_model",
    "read_inputs",
    "resolve_model",
]


DECODING_MODES = ("grounded", "schema")
# Files whose content changes what a model answers; hashed into the run fingerprint.
_FINGERPRINT_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """``--model`` resolved: what to load and what it can hold.

    ``path`` is an absolute local folder when ``local``, else a hub id or a served model name.
    ``context`` is the model's own context limit in tokens (from ``config.json``), None when unknown.
    """

    name: str
    path: str
    local: bool
    context: int | None
    revision: str | None = None


def resolve_model(name: str, *, required: bool = True) -> ResolvedModel:
    """Resolve ``--model``: ``tiny`` (prepared on first use), a local folder, or a hub id.

    With ``required`` (the in-process engine must load it) a name that is neither local nor
    cached raises ``ConfigurationError`` when ``HF_HUB_OFFLINE`` is set. Without it (a server runs
    the model) an unresolvable name is kept as the served name. Raises ``ModelPreparationError``
    when the tiny model cannot be prepared.
    """
    from ..engine.models import model_context_length, model_revision
    from ..engine.models import resolve_model as resolve_path

    try:
        path = resolve_path(name)
    except ConfigurationError:
        if required:
            raise
        return ResolvedModel(name, name, local=False, context=None)
    local = Path(path).is_dir()
    return ResolvedModel(
        name,
        path,
        local=local,
        context=model_context_length(path) if local else None,
        revision=model_revision(path) if local else None,
    )


@dataclass(frozen=True)
class Question:
    """What one request per chunk asks: ``types`` (the type names its answer may hold; its grammar
    and ``schema`` allow only these) and ``text``, the question after the chunk (None for
    ``all-types``: the instructions ask for every type)."""

    types: tuple[str, ...]
    text: str | None
    schema: dict[str, Any]


@dataclass(frozen=True)
class RunPlan:
    """What a run will do, fixed before the engine loads (see the module docstring for the rules).

    ``settings`` are the settings in force: ``settings.vllm`` is fitted to the context and
    ``settings.extraction.chunk_tokens`` is the chunk size actually used.
    """

    settings: Settings
    model: ResolvedModel
    tokenizer: Tokenizer
    decoding: str
    token_ids: bool
    instructions: str
    schema: dict[str, Any]
    overhead_tokens: int
    fingerprint: str
    engine: EngineChoice | None = None
    questions: tuple[Question, ...] = ()
    followup: FollowUp | None = None
    examples: tuple[ChosenExample, ...] = ()

    @property
    def vllm(self) -> VLLMConfig:
        """Engine and client settings with the budgets in force (and the engine choice: dtype, step
        budget, timeout)."""
        return self.settings.vllm

    @property
    def extraction(self) -> ExtractionConfig:
        return self.settings.extraction

    @property
    def max_model_len(self) -> int:
        return self.settings.vllm.max_model_len

    @property
    def chunk_tokens(self) -> int:
        return self.settings.extraction.chunk_tokens

    def completion_budget(self, prompt_tokens: int) -> int:
        """Completion tokens for a prompt of ``prompt_tokens`` tokens: min(``max_completion_tokens``,
        context - prompt). Raises ``ContextOverflowError`` when the prompt is over
        ``max_prompt_tokens`` or leaves no room (``budgets.completion_budget``)."""
        return budgets.completion_budget(self.settings.vllm, prompt_tokens)

    def completion_room(self, prompt_tokens: int) -> int:
        """The most completion tokens the context leaves after a prompt (a retry's ceiling)."""
        return budgets.context_room(self.settings.vllm, prompt_tokens)

    def messages(self, chunk_text: str, question: int = 0) -> list[dict[str, str]]:
        """The chat messages of one chunk's request ``question`` (an index into ``questions``):
        instructions first, then the chunk, then any question (what requests share comes first)."""
        asked = self.questions[question].text if self.questions else None
        return build_messages(self.instructions, chunk_text, asked)

    def as_dict(self) -> dict[str, Any]:
        """The plan for reports: model, budgets in force, decoding, tokenizer, fingerprint."""
        return {
            "model": self.model.name,
            "model_path": self.model.path,
            "model_revision": self.model.revision,
            "model_context": self.model.context,
            "max_model_len": self.max_model_len,
            "max_prompt_tokens": self.vllm.max_prompt_tokens,
            "max_completion_tokens": self.vllm.max_completion_tokens,
            "chunk_tokens": self.chunk_tokens,
            "overhead_tokens": self.overhead_tokens,
            "decoding": self.decoding,
            "token_ids": self.token_ids,
            "strategy": self.extraction.strategy,
            "questions": [list(q.types) for q in self.questions],
            "passes": self.extraction.passes,
            "examples": [e.as_dict() for e in self.examples],
            "tokenizer": self.tokenizer.name,
            "exact_tokens": self.tokenizer.exact,
            **(self.engine.as_dict() if self.engine is not None else {}),
            "fingerprint": self.fingerprint,
        }


def build_plan(
    settings: Settings,
    model: ResolvedModel,
    tokenizer: Tokenizer,
    *,
    context: int | None = None,
    token_ids: bool = True,
    engine: EngineChoice | None = None,
    facts: MachineFacts | None = None,
) -> RunPlan:
    """The frozen plan for a run.

    ``context`` is the limit a server reported (None for the in-process engine: the model's own
    ``config.json`` limit is used). ``token_ids`` says whether the transport takes the prompt as
    token ids (the in-process engine) or as chat messages (HTTP). ``engine``: the dtype and step
    budget of an engine that exists already (a given engine, a server); None chooses them for this
    machine (``choose_engine`` with ``facts``, read when None). Raises ``BudgetError`` (a
    configuration error, exit 2) when the instructions leave no room for document text even after
    the completion budget shrinks to fit, and ``ConfigurationError`` for an unknown decoding mode
    or dtype.
    """
    ext = settings.extraction
    if ext.decoding not in DECODING_MODES:
        raise ConfigurationError(f"unknown decoding {ext.decoding!r}", hint="use grounded or schema")
    limits = [c for c in (model.context, context) if c]
    vllm = budgets.fit_to_context(settings.vllm, min(limits, default=settings.vllm.max_model_len))
    examples = load_examples(ext.examples_file, ext.type_names, ext.max_examples) if ext.examples_file else []
    instructions = build_instructions(ext.entity_types, [e.example for e in examples])
    questions = _questions(ext)
    overhead = max(len(tokenizer.encode_chat(build_messages(instructions, "", q.text))) for q in questions)
    vllm, chunk_tokens = budgets.fit_budgets(vllm, overhead, ext.chunk_tokens)
    if engine is None:
        context_tokens = _longest_context(vllm, overhead, chunk_tokens)
        engine = choose_engine(vllm, _folder(model), facts=facts, context_tokens=context_tokens)
    vllm = engine.apply(vllm)
    in_force = Settings(vllm, dataclasses.replace(ext, chunk_tokens=chunk_tokens))
    schema = build_schema(ext)
    followup = None
    if ext.passes > 1:
        suffix = tokenizer.encode_followup(FOLLOWUP_MESSAGE) if isinstance(tokenizer, HFTokenizer) else None
        followup = FollowUp(FOLLOWUP_MESSAGE, suffix_ids=suffix, passes=ext.passes - 1)
    plan = RunPlan(
        settings=in_force,
        model=model,
        tokenizer=tokenizer,
        decoding=ext.decoding,
        token_ids=token_ids,
        instructions=instructions,
        schema=schema,
        overhead_tokens=overhead,
        fingerprint="",
        engine=engine,
        questions=tuple(questions),
        followup=followup,
        examples=tuple(examples),
    )
    return dataclasses.replace(plan, fingerprint=fingerprint(plan))


def _questions(ext: ExtractionConfig) -> list[Question]:
    """One question per group of types (``ExtractionConfig.questions``), each with its schema."""
    if ext.strategy != "per-type":
        return [Question(tuple(ext.type_names), None, build_schema(ext))]
    by_name = {t.name: t for t in ext.entity_types}
    return [
        Question(group, build_question([by_name[n] for n in group]), build_schema(ext, group))
        for group in ext.questions()
    ]


def _folder(model: ResolvedModel) -> str | None:
    return model.path if model.local else None


def _longest_context(config: VLLMConfig, overhead: int, chunk_tokens: int) -> int:
    """The longest context a request of this plan can reach, in tokens: a full chunk's prompt
    (instructions, template, chunk, slack) plus a retried answer's budget (twice the completion
    budget), at most the context in force. Attention in the step-budget estimate runs over it."""
    prompt = min(config.max_prompt_tokens, overhead + chunk_tokens + budgets.PROMPT_SLACK_TOKENS)
    return min(config.max_model_len, prompt + 2 * config.max_completion_tokens)


def plan_for_local_model(settings: Settings, model: ResolvedModel | None = None) -> RunPlan:
    """The plan for the in-process engine, built before it loads: the model folder's own tokenizer
    and context. Raises ``ConfigurationError`` for a model that cannot be resolved, and
    ``BudgetError`` when the budgets leave no room for text."""
    model = model or resolve_model(settings.vllm.model)
    return build_plan(settings, model, load_tokenizer(model.path), token_ids=True)


def plan_for_client(settings: Settings, client: VLLMClientInterface, model: ResolvedModel | None = None) -> RunPlan:
    """The plan for a connected client: its context, its engine's dtype and step budget as it reports
    them (``EngineChoice.source`` ``"engine"``; a server's are unknown), and the local tokenizer when
    the model folder is here (else the client's: the engine's, or the server's ``/tokenize``)."""
    if model is None:
        name = str(getattr(client, "model_path", None) or settings.vllm.model)
        model = resolve_model(name, required=False)
    tokenizer = load_tokenizer(model.path) if model.local else None
    if tokenizer is None or not tokenizer.exact:
        tokenizer = client.get_tokenizer()
    # Token ids whenever this process has the model's own tokenizer: the in-process engine takes
    # them, and a server takes them on /v1/completions (a remote /tokenize cannot encode text as
    # data, so without a local tokenizer a server gets chat messages).
    direct = client.client_type is not VLLMClientType.HTTP_API  # an engine of ours (direct, Ray)
    token_ids = direct or isinstance(tokenizer, HFTokenizer)
    engine = given_engine(budgets.fit_to_context(settings.vllm, client.max_model_len), _folder(model), client)
    return build_plan(settings, model, tokenizer, context=client.max_model_len, token_ids=token_ids, engine=engine)


def read_inputs(inputs: Sequence[str], settings: Settings, stdin: IO[bytes] | None = None) -> Iterator[InputItem]:
    """The input items of ``inputs`` (``readers.iter_documents``), read as ``settings`` say."""
    ext = settings.extraction
    return iter_documents(
        inputs,
        id_field=ext.id_field,
        text_field=ext.text_field,
        globs=ext.globs,
        max_line_bytes=ext.max_line_bytes,
        stdin=stdin,
    )


def fingerprint(plan: RunPlan) -> str:
    """A short hash (16 hex digits) of ``fingerprint_parts``: two runs with the same fingerprint over
    the same text produce the same records (given the same batches)."""
    return hashlib.sha256(orjson.dumps(fingerprint_parts(plan), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def fingerprint_parts(plan: RunPlan) -> dict[str, Any]:
    """Everything that changes a run's result, as the dict ``fingerprint`` hashes: model identity
    (``_model_identity``, revision, and a hash of its config and tokenizer files), the dtype the
    engine computes in, decoding mode, instruction and schema text, entity types, chunk size and
    overlap, the budgets in force (completion, prompt, context), whether prompts go as token ids or
    chat messages, the alignment options, how the model is asked (strategy, the questions, passes
    and their follow-up, the worked examples: their text is in the instructions, their sources are
    listed) and the vllm-extract version. Nothing machine-specific
    beyond a local folder's path: the same tiny model or hub snapshot on two machines gives the
    same parts. Saved beside the output so a refused resume can name the setting that changed."""
    ext = plan.extraction
    parts: dict[str, Any] = {
        "model": _model_identity(plan.model),
        "revision": plan.model.revision,
        "model_files": _model_files_hash(plan.model),
        "dtype": plan.engine.dtype if plan.engine is not None else None,
        "decoding": plan.decoding,
        "instructions": plan.instructions,
        "schema": plan.schema,
        "types": [[t.name, t.description] for t in ext.entity_types],
        "chunk_tokens": ext.chunk_tokens,
        "chunk_overlap": ext.chunk_overlap,
        "max_completion_tokens": plan.vllm.max_completion_tokens,
        "max_prompt_tokens": plan.vllm.max_prompt_tokens,
        "max_model_len": plan.max_model_len,
        "token_ids": plan.token_ids,
        "batch_invariant": plan.vllm.batch_invariant,
        "max_entities_per_chunk": ext.max_entities_per_chunk,
        "max_entity_chars": ext.max_entity_chars,
        "keep_ungrounded": ext.keep_ungrounded,
        "retry_truncated": ext.retry_truncated,
        "mentions": ext.mentions,
        "strategy": ext.strategy,
        "questions": [[list(q.types), q.text] for q in plan.questions],
        "passes": ext.passes,
        "followup": plan.followup.message if plan.followup is not None else None,
        "examples": [e.as_dict() for e in plan.examples],
        "version": __version__,
    }
    return parts


def batching_parts(plan: RunPlan) -> dict[str, Any]:
    """The settings that shape batches but not, on a batch-invariant engine, results: engine
    sequences and tokens per step, the run's request queue and reorder window, replicas. Not in the
    fingerprint (``--reuse`` and ``merge`` accept a change); saved in ``OUT.run.json`` with the
    fingerprint's parts, where ``--resume`` refuses a change (keys start with ``batch.``)."""
    ext = plan.extraction
    return {
        BATCHING_PREFIX + "max_num_seqs": plan.vllm.max_num_seqs,
        BATCHING_PREFIX + "max_num_batched_tokens": plan.vllm.max_num_batched_tokens,
        BATCHING_PREFIX + "queue_requests": ext.queue_requests,
        BATCHING_PREFIX + "reorder_window": ext.reorder_window,
        BATCHING_PREFIX + "replicas": plan.vllm.data_parallel_size,
    }


def _model_identity(model: ResolvedModel) -> str:
    """The model as the fingerprint names it: ``tiny`` for the embedded model (prepared from a
    checksummed file, wherever the cache is), the hub id for a snapshot in the Hugging Face cache
    (its revision is a part of its own), the folder's path for another local folder, else the name."""
    from ..engine.models import TINY_MODEL

    if not model.local:
        return model.name
    if model.name == TINY_MODEL:
        return TINY_MODEL
    folder = Path(model.path)
    repo = folder.parent.parent.name if model.revision is not None else ""
    if repo.startswith("models--"):
        return repo.removeprefix("models--").replace("--", "/")
    return model.path


# Keys of a model's JSON files that say where or with what it was saved, not what it computes.
_PROVENANCE_KEYS = frozenset({"_name_or_path", "name_or_path", "transformers_version", "_commit_hash"})


def _normalized(name: str, data: bytes) -> bytes:
    """A JSON file's content without provenance keys (``_PROVENANCE_KEYS``), canonically ordered;
    other files (and JSON that does not parse to an object) as they are."""
    if not name.endswith(".json"):
        return data
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    if not isinstance(parsed, dict):
        return data
    kept = {key: value for key, value in parsed.items() if key not in _PROVENANCE_KEYS}
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)


def _model_files_hash(model: ResolvedModel) -> str | None:
    """A short hash of the files of a local model folder that change answers (``_FINGERPRINT_FILES``),
    JSON files normalized (``_normalized``: a prepared tiny model's ``config.json`` named the
    virtualenv it was converted from, so the same model hashed differently on two machines)."""
    if not model.local:
        return None
    digest = hashlib.sha256()
    folder = Path(model.path)
    for name in _FINGERPRINT_FILES:
        path = folder / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(_normalized(name, path.read_bytes()))
    return digest.hexdigest()[:16]
