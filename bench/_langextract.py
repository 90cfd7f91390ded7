"""LangExtract (google/langextract) driven against a local vLLM OpenAI-compatible server.

LangExtract's OpenAI provider (``OpenAILanguageModel``) is chosen explicitly through
``lx.factory.ModelConfig(provider="OpenAILanguageModel", ...)``: the served model's name (a folder
path) matches none of its model-id patterns. ``base_url`` points at ``http://127.0.0.1:PORT/v1``;
no other host is contacted (``fetch_urls`` stays off; the OpenAI SDK sends no telemetry).
Schema constraints come from the example (``use_schema_constraints=True``), temperature 0, seed 42,
the same completion budget as vllm-extract, and ``max_workers`` requests in flight.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from vllm_extract import Document, EntityType

__all__ = ["LangExtractRun", "langextract_version", "run_langextract"]

EXAMPLE_TEXT = (
    "On May 4, 2019, Arden Textile Mills, Inc. sued Corvo Shipping GmbH in the United States District "
    "Court for the District of Oregon under 15 U.S.C. § 1125, seeking $350,000. Judge Helen Park of "
    "Portland, Oregon presided; see Lane v. Corvo, 811 F.3d 204 (9th Cir. 2016)."
)
EXAMPLE_ENTITIES = (
    ("DATE", "May 4, 2019"),
    ("PARTY", "Arden Textile Mills, Inc."),
    ("PARTY", "Corvo Shipping GmbH"),
    ("COURT", "United States District Court for the District of Oregon"),
    ("STATUTE", "15 U.S.C. § 1125"),
    ("MONEY", "$350,000"),
    ("JUDGE", "Helen Park"),
    ("LOCATION", "Portland, Oregon"),
    ("CASE_CITATION", "Lane v. Corvo, 811 F.3d 204 (9th Cir. 2016)"),
)


def langextract_version() -> str | None:
    try:
        return metadata.version("langextract")
    except metadata.PackageNotFoundError:
        return None


@dataclass
class LangExtractRun:
    seconds: float
    documents: int
    extractions: int
    exact: int
    without_interval: int
    failed_documents: int
    omitted_chunks: int = 0


class _OmittedChunks(logging.Handler):
    """Counts LangExtract's "Chunk omitted from results (parse error)" warnings (and hides them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += int("omitted" in record.getMessage())


def _prompt(types: Sequence[EntityType]) -> str:
    lines = [
        "Extract named entities from legal and business documents. Use the exact text of each mention; "
        "do not paraphrase. Entity classes:"
    ]
    lines += [f"- {t.name}: {t.description}" if t.description else f"- {t.name}" for t in types]
    return "\n".join(lines)


def _example(lx: Any, types: Sequence[EntityType]) -> Any:
    allowed = {t.name for t in types}
    extractions = [
        lx.data.Extraction(extraction_class=cls, extraction_text=text)
        for cls, text in EXAMPLE_ENTITIES
        if cls in allowed
    ]
    return lx.data.ExampleData(text=EXAMPLE_TEXT, extractions=extractions)


def run_langextract(
    docs: Sequence[Document],
    types: Sequence[EntityType],
    *,
    base_url: str,
    served_model: str,
    max_tokens: int,
    max_char_buffer: int,
    workers: int,
) -> LangExtractRun:
    """Extract ``types`` from ``docs`` with LangExtract over the server at ``base_url`` (no ``/v1``)."""
    import langextract as lx

    counter = _OmittedChunks()
    loggers = [logging.getLogger(name) for name in ("absl", "langextract")]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.handlers[:], lg.propagate = [counter], False
        lg.setLevel(logging.WARNING)
    config = lx.factory.ModelConfig(
        model_id=served_model,
        provider="OpenAILanguageModel",
        provider_kwargs={
            "base_url": base_url.rstrip("/") + "/v1",
            "api_key": "EMPTY",
            "temperature": 0.0,
            "seed": 42,
            "max_output_tokens": max_tokens,
            "max_workers": workers,
        },
    )
    inputs = [lx.data.Document(text=d.text, document_id=d.id) for d in docs]
    texts = {d.id: d.text for d in docs}
    started = time.perf_counter()
    try:
        results = _extract(lx, inputs, types, config, max_char_buffer, workers)
    finally:
        for lg, (handlers, propagate, level) in zip(loggers, saved, strict=True):
            lg.handlers[:], lg.propagate = handlers, propagate
            lg.setLevel(level)
    seconds = time.perf_counter() - started
    annotated = results if isinstance(results, list) else [results]
    run = LangExtractRun(seconds, len(annotated), 0, 0, 0, len(docs) - len(annotated), counter.count)
    for doc in annotated:
        source = texts.get(doc.document_id, doc.text or "")
        for ext in doc.extractions or ():
            run.extractions += 1
            interval = ext.char_interval
            if interval is None or interval.start_pos is None or interval.end_pos is None:
                run.without_interval += 1
                continue
            run.exact += int(source[interval.start_pos : interval.end_pos] == ext.extraction_text)
    return run


def _extract(
    lx: Any, inputs: list[Any], types: Sequence[EntityType], config: Any, max_char_buffer: int, workers: int
) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lx.extract(
            text_or_documents=inputs,
            prompt_description=_prompt(types),
            examples=[_example(lx, types)],
            config=config,
            use_schema_constraints=True,
            max_char_buffer=max_char_buffer,
            batch_length=max(workers, 1),
            max_workers=workers,
            show_progress=False,
        )
