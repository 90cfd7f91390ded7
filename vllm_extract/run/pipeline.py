"""The run: documents -> chunks -> prompts -> native batches -> aligned entities -> records.

Documents stream in; they are grouped into *windows* of about ``window_chunks`` chunks. Each
window's prompts go to the client as one ``generate_batch`` call (one native vLLM batch), then the
window's records are written, in input order, before the next window is read: memory stays
bounded whatever the corpus size. Everything the run decided up front (model, budgets, decoding,
tokenizer) comes from the ``RunPlan``; the client is only a transport.

Window boundaries depend only on the input (chunk counts), never on what an earlier run already
wrote, so a resumed run sends the very same batches as an uninterrupted one (vLLM's output can
depend on batch composition). Windows already fully written are not generated again.

Preparation (tokenizing and chunking) runs in a worker thread so a tokenizer that calls a server
never blocks the event loop; progress is reported per chunk as responses arrive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ..clients.base import VLLMClientInterface, VLLMRequest, VLLMResponse
from ..events import BatchDone, ChunkDone, DocumentDone, Event, RunFinished, RunStarted, Subscriber, WindowStarted
from ..exceptions import ContextOverflowError
from ..extract.alignment import Mentions, align_document
from ..extract.chunking import Chunk, chunk_document, split_span
from ..extract.parsing import RawEntity, parse_response
from ..output.files import atomic_write
from ..output.records import text_sha256
from ..output.resume import ResumeGuard, ReuseIndex
from ..readers import BadInput, Document, InputItem, SkippedFile, page_of
from .plan import RunPlan

__all__ = ["ExtractionPipeline", "PreparedChunk", "RunSummary"]

logger = logging.getLogger(__name__)


LOOPING_SHARE = 0.5  # a cut answer that spent this share of itself on repeats is not retried


def _looping(content: str) -> bool:
    """Whether a (cut) answer spent at least ``LOOPING_SHARE`` of its characters on entities it had
    already listed: the tiny model's loop, measured by ``repeated_entity_token_share``."""
    from ..extract.grammar import repeated_entity_token_share

    return repeated_entity_token_share(content, len) >= LOOPING_SHARE


@dataclass
class RunSummary:
    """Counts and timings of a run (also the body of the run report)."""

    documents: int = 0
    ok: int = 0
    errors: int = 0
    skipped_done: int = 0
    reused: int = 0
    duplicate_ids: int = 0
    entities: int = 0
    chunks: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    truncated_chunks: int = 0
    truncation_retries: int = 0
    looping_not_retried: int = 0
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
    """A chunk with its exact prompt: ``prompt_ids`` is the chat-templated prompt as the model's
    tokenizer encodes it; ``max_tokens`` its completion budget (``RunPlan.completion_budget``,
    computed once); ``room`` the most completion tokens the context leaves (for the retry)."""

    chunk: Chunk
    messages: list[dict[str, str]]
    prompt_ids: list[int]
    max_tokens: int
    room: int


@dataclass
class _DocWork:
    item: Document | BadInput
    chunks: list[PreparedChunk] = field(default_factory=list)
    error: tuple[str, str] | None = None
    duplicate: bool = False
    sha: str | None = None
    done: bool = False
    reused: dict[str, Any] | None = None


class ExtractionPipeline:
    """Runs extraction over input items with one client and one plan: ``await run(items, sink)``.

    ``client`` may be None to prepare prompts only (``vllm-extract plan``). ``texts_dir``: where a
    converted document's text is stored (``<text_sha256>.txt``) instead of inside its record.
    """

    def __init__(
        self,
        client: VLLMClientInterface | None,
        plan: RunPlan,
        *,
        subscribers: Sequence[Subscriber] = (),
        stop_event: threading.Event | None = None,
        texts_dir: Path | None = None,
    ) -> None:
        self.client = client
        self.texts_dir = texts_dir
        self.plan = plan
        self.settings = plan.settings
        self.subscribers = list(subscribers)
        self.stop_event = stop_event or threading.Event()
        self.summary = RunSummary(exact_tokens=plan.tokenizer.exact)

    # -- events -----------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        for subscriber in self.subscribers:
            try:
                subscriber(event)
            except Exception:
                logger.exception("event subscriber failed")

    # -- preparation --------------------------------------------------------------------------
    def prepare(self, doc: Document) -> list[PreparedChunk]:
        """Chunks of a document with exact prompts, each within the prompt budget.

        A built prompt over budget (tokens merge differently at chunk edges) is split in two at a
        boundary and rebuilt. Raises ``ContextOverflowError`` when a one-character chunk still
        does not fit.
        """
        plan = self.plan
        chunks = chunk_document(doc.id, doc.text, plan.tokenizer, plan.chunk_tokens, plan.extraction.chunk_overlap)
        prepared: list[PreparedChunk] = []
        pending = list(reversed(chunks))
        while pending:
            chunk = pending.pop()
            messages = plan.messages(chunk.text)
            ids = plan.tokenizer.encode_chat(messages)
            if len(ids) > plan.vllm.max_prompt_tokens and chunk.end - chunk.start > 1:
                self.summary.prompt_splits += 1
                pending.extend(reversed(split_span(chunk)))
                continue
            budget = plan.completion_budget(len(ids))
            prepared.append(PreparedChunk(chunk, messages, ids, budget, plan.completion_room(len(ids))))
        return [dataclasses.replace(p, chunk=dataclasses.replace(p.chunk, index=i)) for i, p in enumerate(prepared)]

    def windows(
        self, items: Iterable[InputItem], resume: ResumeGuard | None = None, reuse: ReuseIndex | None = None
    ) -> Iterator[list[_DocWork]]:
        """Group items into windows of about ``window_chunks`` chunks (deterministic).

        ``resume`` checks each item against the run being resumed (raises ``OutputError`` on the
        first difference, before any window holding a new document is yielded) and marks done
        ones; ``reuse`` fills ``reused`` for documents an earlier output already holds."""
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
                work.sha = text_sha256(item.text)
            if resume is not None:
                work.done = resume.check(item.index, item.id, work.sha)
            if reuse is not None and not work.done:
                work.reused = reuse.lookup(item.id, work.sha, self.plan.fingerprint)
            if isinstance(item, Document) and work.reused is None:
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
        if resume is not None:
            resume.finish()
        if window:
            yield window

    # -- the run -------------------------------------------------------------------------------
    async def run(
        self,
        items: Iterable[InputItem],
        sink: Callable[[list[dict[str, Any]]], None],
        *,
        resume: ResumeGuard | None = None,
        reuse: ReuseIndex | None = None,
        documents_total: int | None = None,
    ) -> RunSummary:
        """Process every item; ``sink`` receives each window's records in input order.

        ``resume`` (from the output writer's scan) skips the documents already written and raises
        ``OutputError`` when the inputs or settings differ from the run being resumed; ``reuse``
        copies records of earlier outputs instead of extracting those documents again."""
        if self.client is None:
            raise TypeError("this pipeline has no client: it can prepare prompts but not run")
        started = time.perf_counter()
        self.emit(
            RunStarted(
                documents_total,
                self.plan.model.name,
                self.client.client_type.value,
                self.plan.tokenizer.exact,
                len(resume.done) if resume is not None else 0,
            )
        )
        windows = self.windows(items, resume, reuse)
        for number in range(1 << 62):
            # Tokenizing runs off the event loop (a remote tokenizer makes HTTP calls).
            window = await asyncio.to_thread(next, windows, None)
            if window is None:
                break
            todo = [w for w in window if not w.done]
            self.summary.skipped_done += len(window) - len(todo)
            if not todo:
                continue
            records = await self._process_window(number, window)
            out = [r for w, r in zip(window, records, strict=True) if not w.done]
            sink(out)
            for record in out:
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
        if record.get("reused"):
            s.reused += 1
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
        requests = [self._request(p, p.max_tokens) for _, p in jobs]
        responses = await self._generate(requests, retry=False)

        retry_at = [
            i
            for i, r in enumerate(responses)
            if r.truncated and jobs[i][1].room > jobs[i][1].max_tokens and not _looping(r.content)
        ]
        self.summary.looping_not_retried += sum(1 for r in responses if r.truncated and _looping(r.content))
        if retry_at and self.settings.extraction.retry_truncated:
            # A cut response is retried once with twice its budget (at most what the context leaves);
            # one cut while repeating itself is not: a bigger budget would buy more repeats.
            retried = [self._request(jobs[i][1], min(2 * jobs[i][1].max_tokens, jobs[i][1].room)) for i in retry_at]
            self.summary.truncation_retries += len(retried)
            for i, response in zip(retry_at, await self._generate(retried, retry=True), strict=True):
                if response.success:
                    responses[i] = response
        by_doc: dict[int, list[tuple[PreparedChunk, VLLMResponse]]] = {}
        for (w, p), response in zip(jobs, responses, strict=True):
            by_doc.setdefault(id(w), []).append((p, response))
        return [self._record(w, by_doc.get(id(w), [])) for w in window]

    def _request(self, prepared: PreparedChunk, max_tokens: int) -> VLLMRequest:
        """The request for one chunk: token ids when the transport takes them, the grammar of
        grounded decoding (with the JSON schema as the fallback a server may need), or the schema."""
        plan = self.plan
        self.summary.max_prompt_tokens_sent = max(self.summary.max_prompt_tokens_sent, len(prepared.prompt_ids))
        grammar = None
        if plan.decoding == "grounded":
            from ..extract.grammar import build_grounded_grammar

            grammar = build_grounded_grammar(prepared.chunk.text, plan.extraction)
        return VLLMRequest(
            messages=prepared.messages,
            max_tokens=max_tokens,
            json_schema=plan.schema,
            grammar=grammar,
            prompt_token_ids=prepared.prompt_ids if plan.token_ids else None,
            request_id=f"{prepared.chunk.doc_id}#{prepared.chunk.index}",
        )

    async def _generate(self, requests: list[VLLMRequest], *, retry: bool) -> list[VLLMResponse]:
        if not requests:
            return []
        assert self.client is not None
        started = time.perf_counter()

        def chunk_done(response: VLLMResponse) -> None:
            self.emit(ChunkDone(response.request_id, response.completion_tokens, retry))

        responses = await self.client.generate_batch(requests, on_response=chunk_done)
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

    def _converted_text(self, item: Document, sha: str) -> dict[str, Any]:
        """What a converted document's record carries so its offsets can be read: the text itself,
        or with ``texts_dir`` the path of a stored copy named by its hash; and the page spans."""
        out: dict[str, Any] = {}
        if self.texts_dir is None:
            out["text"] = item.text
        else:
            path = self.texts_dir / f"{sha}.txt"
            if not path.exists():
                atomic_write(path, item.text.encode("utf-8", "surrogateescape"))
            out["text_path"] = str(path)
        if item.pages is not None:
            out["pages"] = [list(span) for span in item.pages]
        return out

    def _record(self, work: _DocWork, results: list[tuple[PreparedChunk, VLLMResponse]]) -> dict[str, Any]:
        item = work.item
        if work.reused is not None:
            assert isinstance(item, Document)
            extra = {"line": item.line, "duplicate_id": True if work.duplicate else None}
            return work.reused | {"index": item.index, "source": item.source, "metadata": item.metadata} | extra
        record: dict[str, Any] = {"id": item.id, "index": item.index, "source": item.source}
        if work.sha is not None:
            record["text_sha256"] = work.sha
        record["fingerprint"] = self.plan.fingerprint
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
        ext = self.settings.extraction
        parsed: list[tuple[Chunk, list[RawEntity]]] = []
        truncated: list[int] = []
        notes: list[str] = []
        failed: list[str] = []
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for prepared, response in results:
            usage["prompt_tokens"] += response.prompt_tokens
            usage["completion_tokens"] += response.completion_tokens
            if not response.success:
                failed.append(f"chunk {prepared.chunk.index}: {response.error}")
                continue
            raw, note = parse_response(response.content, ext.type_names)
            if response.truncated:
                truncated.append(prepared.chunk.index)
            elif note:
                notes.append(f"chunk {prepared.chunk.index}: {note}")
            parsed.append((prepared.chunk, raw))
        mentions = cast(Mentions, ext.mentions)  # validated by ExtractionConfig
        alignment = align_document(item.text, parsed, keep_ungrounded=ext.keep_ungrounded, mentions=mentions)
        entities = alignment.entities
        ungrounded = alignment.ungrounded
        entity_dicts = [e.to_dict() for e in entities]
        if item.converted:
            record |= self._converted_text(item, work.sha or text_sha256(item.text))
        if item.pages:
            for entity in entity_dicts:
                page = page_of(entity["start"], item.pages) if entity.get("grounded", True) else None
                if page is not None:
                    entity["page"] = page
        record |= {
            "status": "ok",
            "entities": entity_dicts,
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
