"""The run: documents -> chunks -> prompts -> native batches -> grounded entities -> records.

Documents stream in; they are grouped into *windows* of about ``window_chunks`` chunks. Each
window's prompts go to the client as one ``generate_batch`` call (one native vLLM batch), then the
window's records are written, in input order, before the next window is read: memory stays
bounded whatever the corpus size.

Window boundaries depend only on the input (chunk counts), never on what an earlier run already
wrote, so a resumed run sends the very same batches as an uninterrupted one (vLLM's output can
depend on batch composition). Windows already fully written are not generated again.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .clients.base import VLLMClientInterface, VLLMRequest, VLLMResponse
from .config import Settings, VLLMConfig
from .events import BatchDone, DocumentDone, Event, RunFinished, RunStarted, Subscriber, WindowStarted
from .exceptions import ContextOverflowError
from .extract.alignment import Entity, ground_entities, merge_entities
from .extract.chunking import Chunk, chunk_document, split_span
from .extract.parsing import parse_response
from .extract.prompts import build_instructions, build_messages, build_schema
from .readers import BadInput, Document, InputItem, SkippedFile
from .tokens import HFTokenizer, TokenEstimator, Tokenizer

__all__ = ["ExtractionPipeline", "PreparedChunk", "RunSummary"]

logger = logging.getLogger(__name__)

PROMPT_SLACK_TOKENS = 8  # room for tokens that merge differently at the chunk's edges


@dataclass
class RunSummary:
    """Counts and timings of a run (also the body of the run report)."""

    documents: int = 0
    ok: int = 0
    errors: int = 0
    skipped_done: int = 0
    duplicate_ids: int = 0
    entities: int = 0
    chunks: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    truncated_chunks: int = 0
    truncation_retries: int = 0
    ungrounded_dropped: int = 0
    prompt_splits: int = 0
    generation_seconds: float = 0.0
    preparation_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    interrupted: bool = False
    exact_tokens: bool = True
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    skipped_files: list[str] = field(default_factory=list)
    max_prompt_tokens_sent: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["errors_by_kind"] = dict(self.errors_by_kind)
        elapsed = self.elapsed_seconds or 1e-9
        out["documents_per_second"] = round(self.documents / elapsed, 4)
        out["generated_tokens_per_second"] = round(self.completion_tokens / elapsed, 2)
        return out


@dataclass
class PreparedChunk:
    """A chunk with its exact prompt."""

    chunk: Chunk
    messages: list[dict[str, str]]
    prompt_ids: list[int]


@dataclass
class _DocWork:
    item: Document | BadInput
    chunks: list[PreparedChunk] = field(default_factory=list)
    error: tuple[str, str] | None = None
    duplicate: bool = False


class ExtractionPipeline:
    """Runs extraction over input items with one client. Use ``await run(items, sink)``."""

    def __init__(
        self,
        client: VLLMClientInterface | None,
        settings: Settings,
        *,
        subscribers: Sequence[Subscriber] = (),
        stop_event: threading.Event | None = None,
        tokenizer: Tokenizer | None = None,
        max_model_len: int | None = None,
    ) -> None:
        """``client`` may be None for planning only (``prepare``): then pass ``tokenizer`` and
        ``max_model_len``, the model's real context."""
        self.client = client
        self.settings = settings
        self.subscribers = list(subscribers)
        self.stop_event = stop_event or threading.Event()
        if client is not None:
            tokenizer = tokenizer or client.get_tokenizer()
            max_model_len = max_model_len or client.max_model_len
        if tokenizer is None or max_model_len is None:
            raise TypeError("without a client, pass tokenizer and max_model_len")
        self.tokenizer: Tokenizer = tokenizer
        ext = settings.extraction
        self.vllm_config: VLLMConfig = settings.vllm.fitted_to(max_model_len)
        limit = self.vllm_config.max_model_len
        self.estimator = TokenEstimator(self.vllm_config, self.tokenizer)
        self.instructions = build_instructions(ext.entity_types)
        self.schema = build_schema(ext)
        overhead = len(self.tokenizer.encode_chat(build_messages(self.instructions, "")))
        self.overhead_tokens = overhead
        self.chunk_tokens = min(ext.chunk_tokens, self.estimator.max_chunk_tokens(overhead + PROMPT_SLACK_TOKENS))
        if self.chunk_tokens < 32:
            raise ContextOverflowError(
                f"the instructions take {overhead} tokens and leave no room for document text "
                f"in a {limit}-token context with {self.vllm_config.max_completion_tokens} completion tokens",
                estimated_tokens=overhead,
                max_tokens=self.vllm_config.max_prompt_tokens,
                hint="lower max_completion_tokens, use fewer entity types, or a model with a longer context",
            )
        self.send_token_ids = isinstance(self.tokenizer, HFTokenizer)
        self.summary = RunSummary(exact_tokens=self.tokenizer.exact)

    # -- events -----------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        for subscriber in self.subscribers:
            try:
                subscriber(event)
            except Exception:
                logger.exception("event subscriber failed")

    # -- preparation --------------------------------------------------------------------------
    def prepare(self, doc: Document) -> list[PreparedChunk]:
        """Chunks of a document with exact prompts, each within the prompt budget."""
        chunks = chunk_document(
            doc.id, doc.text, self.tokenizer, self.chunk_tokens, self.settings.extraction.chunk_overlap
        )
        prepared: list[PreparedChunk] = []
        pending = list(reversed(chunks))
        while pending:
            chunk = pending.pop()
            messages = build_messages(self.instructions, chunk.text)
            ids = self.tokenizer.encode_chat(messages)
            if len(ids) > self.vllm_config.max_prompt_tokens and chunk.end - chunk.start > 1:
                self.summary.prompt_splits += 1
                pending.extend(reversed(split_span(chunk)))
                continue
            self.estimator.completion_budget(len(ids))  # raises ContextOverflowError if it cannot fit
            prepared.append(PreparedChunk(chunk, messages, ids))
        return [dataclasses.replace(p, chunk=dataclasses.replace(p.chunk, index=i)) for i, p in enumerate(prepared)]

    def windows(self, items: Iterable[InputItem]) -> Iterator[list[_DocWork]]:
        """Group items into windows of about ``window_chunks`` chunks (deterministic)."""
        limit = self.settings.extraction.window_chunks
        window: list[_DocWork] = []
        size = 0
        seen_ids: set[str] = set()
        for item in items:
            if isinstance(item, SkippedFile):
                self.summary.skipped_files.append(item.path)
                continue
            work = _DocWork(item)
            work.duplicate = item.id in seen_ids
            seen_ids.add(item.id)
            if isinstance(item, Document):
                started = time.perf_counter()
                try:
                    work.chunks = self.prepare(item)
                except ContextOverflowError as exc:
                    work.error = ("context_overflow", str(exc))
                self.summary.preparation_seconds += time.perf_counter() - started
            window.append(work)
            size += len(work.chunks)
            if size >= limit:
                yield window
                window, size = [], 0
        if window:
            yield window

    # -- the run -------------------------------------------------------------------------------
    async def run(
        self,
        items: Iterable[InputItem],
        sink: Callable[[list[dict[str, Any]]], None],
        *,
        done: Mapping[int, str] | None = None,
        documents_total: int | None = None,
    ) -> RunSummary:
        """Process every item; ``sink`` receives each window's records in input order."""
        if self.client is None:
            raise TypeError("this pipeline has no client: it can prepare prompts but not run")
        done = done or {}
        started = time.perf_counter()
        self.emit(
            RunStarted(
                documents_total,
                self.settings.vllm.model,
                self.client.client_type.value,
                self.tokenizer.exact,
                len(done),
            )
        )
        for number, window in enumerate(self.windows(items)):
            todo = [w for w in window if done.get(w.item.index) != w.item.id]
            self.summary.skipped_done += len(window) - len(todo)
            if not todo:
                continue
            records = await self._process_window(number, window)
            out = [r for w, r in zip(window, records, strict=True) if done.get(w.item.index) != w.item.id]
            sink(out)
            for w, record in zip(window, records, strict=True):
                if done.get(w.item.index) == w.item.id:
                    continue
                self._count(record)
            if self.stop_event.is_set():
                self.summary.interrupted = True
                logger.warning("stop requested: finished the window in flight, not starting another")
                break
        self.summary.elapsed_seconds = time.perf_counter() - started
        self.emit(RunFinished(self.summary.as_dict()))
        return self.summary

    def _count(self, record: dict[str, Any]) -> None:
        s = self.summary
        s.documents += 1
        if record["status"] == "ok":
            s.ok += 1
        else:
            s.errors += 1
            s.errors_by_kind[record["error"]["kind"]] += 1
        if record.get("duplicate_id"):
            s.duplicate_ids += 1
        s.entities += len(record.get("entities", ()))
        s.chunks += record.get("chunks", 0)
        s.truncated_chunks += len(record.get("truncated_chunks", ()))
        if not self.settings.extraction.keep_ungrounded:
            s.ungrounded_dropped += record.get("ungrounded", 0)
        error = record.get("error") or {}
        self.emit(
            DocumentDone(
                record["id"],
                record["status"],
                len(record.get("entities", ())),
                record.get("chunks", 0),
                error.get("kind"),
                error.get("message"),
            )
        )

    async def _process_window(self, number: int, window: list[_DocWork]) -> list[dict[str, Any]]:
        jobs = [(w, p) for w in window for p in w.chunks]
        prompt_tokens = sum(len(p.prompt_ids) for _, p in jobs)
        self.emit(WindowStarted(number, len(window), len(jobs), prompt_tokens))
        max_tokens = self.vllm_config.max_completion_tokens
        requests = [self._request(p, max_tokens) for _, p in jobs]
        responses = await self._generate(requests, retry=False)

        retry_at = [
            i
            for i, r in enumerate(responses)
            if r.truncated and self._bigger_budget(jobs[i][1], max_tokens) > max_tokens
        ]
        if retry_at and self.settings.extraction.retry_truncated:
            retried = [self._request(jobs[i][1], self._bigger_budget(jobs[i][1], max_tokens)) for i in retry_at]
            self.summary.truncation_retries += len(retried)
            for i, response in zip(retry_at, await self._generate(retried, retry=True), strict=True):
                if response.success:
                    responses[i] = response
        by_doc: dict[int, list[tuple[PreparedChunk, VLLMResponse]]] = {}
        for (w, p), response in zip(jobs, responses, strict=True):
            by_doc.setdefault(id(w), []).append((p, response))
        return [self._record(w, by_doc.get(id(w), [])) for w in window]

    def _bigger_budget(self, prepared: PreparedChunk, current: int) -> int:
        room = self.vllm_config.max_model_len - len(prepared.prompt_ids)
        return min(current * 2, room)

    def _request(self, prepared: PreparedChunk, max_tokens: int) -> VLLMRequest:
        self.summary.max_prompt_tokens_sent = max(self.summary.max_prompt_tokens_sent, len(prepared.prompt_ids))
        return VLLMRequest(
            messages=prepared.messages,
            max_tokens=self.estimator.completion_budget(len(prepared.prompt_ids), max_tokens),
            json_schema=self.schema,
            prompt_token_ids=prepared.prompt_ids if self.send_token_ids else None,
            request_id=f"{prepared.chunk.doc_id}#{prepared.chunk.index}",
        )

    async def _generate(self, requests: list[VLLMRequest], *, retry: bool) -> list[VLLMResponse]:
        if not requests:
            return []
        started = time.perf_counter()
        assert self.client is not None
        responses = await self.client.generate_batch(requests)
        seconds = time.perf_counter() - started
        s = self.summary
        s.generation_seconds += seconds
        s.requests += len(requests)
        prompt = sum(r.prompt_tokens for r in responses)
        completion = sum(r.completion_tokens for r in responses)
        s.prompt_tokens += prompt
        s.completion_tokens += completion
        s.cached_tokens += sum(r.cached_tokens for r in responses)
        self.emit(BatchDone(len(requests), prompt, completion, seconds, retry))
        return responses

    def _record(self, work: _DocWork, results: list[tuple[PreparedChunk, VLLMResponse]]) -> dict[str, Any]:
        item = work.item
        record: dict[str, Any] = {"id": item.id, "index": item.index, "source": item.source}
        if item.line is not None:
            record["line"] = item.line
        if work.duplicate:
            record["duplicate_id"] = True
        if isinstance(item, BadInput):
            return record | {"status": "error", "error": {"kind": item.kind, "message": item.message}}
        record["metadata"] = item.metadata
        if work.error is not None:
            kind, message = work.error
            return record | {"status": "error", "error": {"kind": kind, "message": message}, "chunks": 0}
        per_chunk: list[list[Entity]] = []
        truncated: list[int] = []
        notes: list[str] = []
        failed: list[str] = []
        ungrounded = 0
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for prepared, response in results:
            usage["prompt_tokens"] += response.prompt_tokens
            usage["completion_tokens"] += response.completion_tokens
            if not response.success:
                failed.append(f"chunk {prepared.chunk.index}: {response.error}")
                continue
            raw, note = parse_response(response.content, self.settings.extraction.type_names)
            if response.truncated:
                truncated.append(prepared.chunk.index)
            elif note:
                notes.append(f"chunk {prepared.chunk.index}: {note}")
            entities, lost = ground_entities(
                raw, prepared.chunk, keep_ungrounded=self.settings.extraction.keep_ungrounded
            )
            ungrounded += lost
            per_chunk.append(entities)
        entities = merge_entities(per_chunk)
        record |= {
            "status": "ok",
            "entities": [e.to_dict() for e in entities],
            "chunks": len(results),
            "usage": usage,
            "ungrounded": ungrounded,
        }
        if truncated:
            record["truncated_chunks"] = truncated
        if notes:
            record["warnings"] = notes
        if failed:
            record["status"] = "error"
            record["error"] = {
                "kind": "generation_failed",
                "message": f"{len(failed)} of {len(results)} chunks failed: " + "; ".join(failed[:3]),
            }
        return record
