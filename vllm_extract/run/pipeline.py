"""The run: documents -> chunks -> prompts -> a stream of requests -> aligned entities -> records.

Three parts run at once (see the README's "How a run works"):

- **Preparation** (a worker thread): reads and converts each input (PDF, DOCX, HTML), checks it
  against the run being resumed or reused, cuts it into chunks with exact token counts and builds
  each chunk's request (prompt token ids and, for grounded decoding, its grammar). Prepared
  documents wait in a handoff bounded in requests (``queue_requests``).
- **Dispatch** (the event loop): takes prepared documents in input order and submits their
  requests to the client's stream (``RequestStream``), as long as fewer than ``queue_requests``
  are unanswered and the document is within ``reorder_window`` documents of the oldest one not
  yet done. The engine side feeds itself from the stream by engine state and input order
  (``clients.engine_loop``), so the same inputs and settings give the same batches.
- **Collection** (the event loop): as each request's final response arrives (after the retry of
  a cut answer, which the engine side adds to the same stream), its document's entities are
  parsed and aligned once all its chunks are in; records are written in input order through the
  reorder buffer (documents done but waiting for an earlier one; at most ``reorder_window``). When
  the buffer is full, dispatch pauses until the oldest document is done.

Memory is bounded by the handoff, the unanswered requests and the reorder buffer, whatever the
corpus size. Durability: each record is written as soon as it is next in order, and fsynced in
small groups (``OutputWriter``). A SIGKILL loses only the documents with requests in flight and
those held in the reorder buffer; a power loss also the group not yet fsynced. The first stop
request (SIGINT/SIGTERM) stops dispatch, finishes the documents in flight and writes them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..clients.base import VLLMClientInterface, VLLMRequest, VLLMResponse
from ..clients.followups import looping
from ..events import DocumentDone, Event, RunFinished, RunStarted, Subscriber
from ..exceptions import ContextOverflowError
from ..extract.alignment import Mentions, align_document
from ..extract.chunking import Chunk, chunk_document, split_span
from ..extract.parsing import RawEntity, parse_response
from ..output.files import atomic_write
from ..output.records import text_sha256
from ..output.resume import ResumeGuard, ReuseIndex
from ..readers import BadInput, Document, InputItem, SkippedFile, page_of
from .feed import DocWork, Handoff, Run
from .plan import RunPlan
from .summary import RunSummary

__all__ = ["ExtractionPipeline", "PreparedChunk", "RunSummary"]

logger = logging.getLogger(__name__)

DEFAULT_REORDER_WINDOW = 256  # documents done but waiting for an earlier one


@dataclass
class PreparedChunk:
    """A chunk with the exact prompt of one of its requests: ``prompt_ids`` is the chat-templated
    prompt as the model's tokenizer encodes it; ``max_tokens`` its completion budget
    (``RunPlan.completion_budget``, computed once); ``room`` the most completion tokens the context
    leaves (for the retry); ``question`` the index of what it asks in ``RunPlan.questions``."""

    chunk: Chunk
    messages: list[dict[str, str]]
    prompt_ids: list[int]
    max_tokens: int
    room: int
    question: int = 0


class ExtractionPipeline:
    """Runs extraction over input items with one client and one plan: ``await run(items, sink)``.

    ``client`` may be None to prepare prompts only (``vllm-extract plan``). ``texts_dir``: where a
    converted document's text is stored (``<text_sha256>.txt``) instead of inside its record.
    ``queue_requests``: prepared and unanswered requests at most (default: twice what the engine
    side holds at once, ``client.capacity``); ``reorder_window``: documents done but waiting for an
    earlier one at most.
    """

    def __init__(
        self,
        client: VLLMClientInterface | None,
        plan: RunPlan,
        *,
        subscribers: Sequence[Subscriber] = (),
        stop_event: threading.Event | None = None,
        texts_dir: Path | None = None,
        queue_requests: int | None = None,
        reorder_window: int = DEFAULT_REORDER_WINDOW,
        deterministic: bool = True,
    ) -> None:
        self.client = client
        self.texts_dir = texts_dir
        self.plan = plan
        self.settings = plan.settings
        self.subscribers = list(subscribers)
        self.stop_event = stop_event or threading.Event()
        self.summary = RunSummary(exact_tokens=plan.tokenizer.exact)
        capacity = client.capacity if client is not None else 1
        self.queue_requests = queue_requests or max(2 * capacity, capacity + 8)
        self.reorder_window = max(1, reorder_window)
        self.deterministic = deterministic
        self._lock = threading.Lock()

    # -- events -----------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        for subscriber in self.subscribers:
            try:
                subscriber(event)
            except Exception:
                logger.exception("event subscriber failed")

    # -- preparation --------------------------------------------------------------------------
    def prepare(self, doc: Document) -> list[PreparedChunk]:
        """The requests of a document: for each chunk, one per question of the plan (one for
        ``all-types``, one per type or group of types for ``per-type``), with exact prompts, each
        within the prompt budget; chunk by chunk, questions in plan order.

        A chunk with a built prompt over budget (tokens merge differently at chunk edges) is split
        in two at a boundary and rebuilt. Raises ``ContextOverflowError`` when a one-character
        chunk still does not fit.
        """
        plan = self.plan
        chunks = chunk_document(doc.id, doc.text, plan.tokenizer, plan.chunk_tokens, plan.extraction.chunk_overlap)
        prepared: list[list[PreparedChunk]] = []
        pending = list(reversed(chunks))
        while pending:
            chunk = pending.pop()
            asks = []
            for question in range(max(1, len(plan.questions))):
                messages = plan.messages(chunk.text, question)
                asks.append((messages, plan.tokenizer.encode_chat(messages), question))
            if max(len(ids) for _, ids, _ in asks) > plan.vllm.max_prompt_tokens and chunk.end - chunk.start > 1:
                with self._lock:
                    self.summary.prompt_splits += 1
                pending.extend(reversed(split_span(chunk)))
                continue
            prepared.append(
                [
                    PreparedChunk(
                        chunk, messages, ids, plan.completion_budget(len(ids)), plan.completion_room(len(ids)), question
                    )
                    for messages, ids, question in asks
                ]
            )
        return [
            dataclasses.replace(p, chunk=dataclasses.replace(p.chunk, index=i))
            for i, asked in enumerate(prepared)
            for p in asked
        ]

    def _request(self, prepared: PreparedChunk) -> VLLMRequest:
        """The request for one chunk and question: token ids when the transport takes them, the
        grammar of grounded decoding allowing only the question's types (with the JSON schema as
        the fallback a server may need), or the schema; a cut answer may be asked again with twice
        its budget (at most what the context leaves); further passes follow (``--passes``)."""
        plan = self.plan
        question = plan.questions[prepared.question] if plan.questions else None
        types = question.types if question is not None else None
        grammar = None
        if plan.decoding == "grounded":
            from ..extract.grammar import build_grounded_grammar

            grammar = build_grounded_grammar(prepared.chunk.text, plan.extraction, types=types)
        retry = None
        if plan.extraction.retry_truncated and prepared.room > prepared.max_tokens:
            retry = min(2 * prepared.max_tokens, prepared.room)
        suffix = f"/{prepared.question}" if len(plan.questions) > 1 else ""
        return VLLMRequest(
            messages=prepared.messages,
            max_tokens=prepared.max_tokens,
            json_schema=question.schema if question is not None else plan.schema,
            grammar=grammar,
            prompt_token_ids=prepared.prompt_ids if plan.token_ids else None,
            request_id=f"{prepared.chunk.doc_id}#{prepared.chunk.index}{suffix}",
            retry_max_tokens=retry,
            followup=plan.followup,
        )

    def _prepare_work(
        self, item: Document | BadInput, seen_ids: set[str], resume: ResumeGuard | None, reuse: ReuseIndex | None
    ) -> DocWork:
        work = DocWork(item)
        work.duplicate = item.id in seen_ids
        seen_ids.add(item.id)
        if isinstance(item, Document):
            work.sha = text_sha256(item.text)
        if resume is not None:
            line_sha = item.line_sha256 if isinstance(item, BadInput) else None
            work.done = resume.check(item.index, item.id, work.sha, line_sha256=line_sha)
        if reuse is not None and not work.done:
            work.reused = reuse.lookup(item.id, work.sha, self.plan.fingerprint)
        if isinstance(item, Document) and work.reused is None and not work.done:
            started = time.perf_counter()
            try:
                work.chunks = self.prepare(item)
                work.requests = [self._request(p) for p in work.chunks]
            except ContextOverflowError as exc:
                work.error = ("context_overflow", str(exc))
            with self._lock:
                self.summary.preparation_seconds += time.perf_counter() - started
        return work

    def _produce(
        self, items: Iterable[InputItem], handoff: Handoff, resume: ResumeGuard | None, reuse: ReuseIndex | None
    ) -> None:
        """The preparation thread: every item, prepared, into ``handoff`` in input order."""
        seen_ids: set[str] = set()
        try:
            for item in items:
                if self.stop_event.is_set() or handoff.closed:
                    break
                if isinstance(item, SkippedFile):
                    with self._lock:
                        self.summary.skipped_files.append(item.path)
                    continue
                work = self._prepare_work(item, seen_ids, resume, reuse)
                if not handoff.put(work, len(work.requests)):
                    return
            else:
                if resume is not None:
                    resume.finish()
        except BaseException as exc:  # noqa: BLE001 - raised again on the event loop
            handoff.finish(exc)
            return
        handoff.finish()

    # -- the run -------------------------------------------------------------------------------
    async def run(
        self,
        items: Iterable[InputItem],
        sink: Callable[[list[dict[str, Any]]], None],
        *,
        tick: Callable[[], None] | None = None,
        resume: ResumeGuard | None = None,
        reuse: ReuseIndex | None = None,
        documents_total: int | None = None,
    ) -> RunSummary:
        """Process every item; ``sink`` receives records in input order as soon as they are next
        (``tick`` is called as responses arrive: the writer fsyncs a group that is due).

        ``resume`` (from the output writer's scan) skips the documents already written and raises
        ``OutputError`` when the inputs or settings differ from the run being resumed; ``reuse``
        copies records of earlier outputs instead of extracting those documents again. When the
        engine dies more often than the restart bound allows, the run stops: records written
        stand, ``summary.stopped`` says why, and ``--resume`` continues later."""
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
        handoff = Handoff(self.queue_requests)
        producer = threading.Thread(
            target=self._produce, args=(items, handoff, resume, reuse), name="vllm-extract-prepare", daemon=True
        )
        run = Run(self, sink, tick)
        stream = self.client.open_stream(deterministic=self.deterministic, group_window=self.reorder_window)
        producer.start()
        try:
            async with stream:
                await run.go(handoff, stream)
        finally:
            handoff.close()
            await asyncio.to_thread(producer.join)
        s = self.summary
        s.generation_seconds = run.generation_seconds
        s.elapsed_seconds = time.perf_counter() - started
        s.engine = stream.stats.as_dict()
        s.engine_restarts = stream.stats.restarts
        s.poison_requests = stream.stats.poison_requests
        self.emit(RunFinished(s.as_dict()))
        return s

    # -- records -------------------------------------------------------------------------------
    def count(self, record: dict[str, Any]) -> None:
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

    def count_response(self, response: VLLMResponse) -> None:
        s = self.summary
        s.requests += response.attempts
        s.prompt_tokens += response.prompt_tokens
        s.completion_tokens += response.completion_tokens
        s.cached_tokens += response.cached_tokens
        s.truncation_retries += response.attempts - 1
        if response.truncated and response.attempts == 1 and looping(response.content):
            s.looping_not_retried += 1

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

    def _where(self, prepared: PreparedChunk) -> str:
        """A request named in messages: its chunk, and its types when there are several questions."""
        if len(self.plan.questions) > 1:
            return f"chunk {prepared.chunk.index} ({'+'.join(self.plan.questions[prepared.question].types)})"
        return f"chunk {prepared.chunk.index}"

    def record(self, work: DocWork) -> dict[str, Any]:
        """The record of a document whose requests are all answered (or that needs none)."""
        item = work.item
        if work.reused is not None:
            assert isinstance(item, Document)
            extra = {"line": item.line, "duplicate_id": True if work.duplicate else None}
            return work.reused | {"index": item.index, "source": item.source, "metadata": item.metadata} | extra
        record: dict[str, Any] = {"id": item.id, "index": item.index, "source": item.source}
        if work.sha is not None:
            record["text_sha256"] = work.sha
        if isinstance(item, BadInput) and item.line_sha256 is not None:
            record["line_sha256"] = item.line_sha256
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
        truncated: list[int] = []
        notes: list[str] = []
        failed: list[str] = []
        unparsable: list[str] = []
        poison = False
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        by_chunk: dict[int, tuple[Chunk, list[RawEntity]]] = {}
        for i, prepared in enumerate(work.chunks):
            response = work.responses[i]
            where = self._where(prepared)
            usage["prompt_tokens"] += response.prompt_tokens
            usage["completion_tokens"] += response.completion_tokens
            if not response.success:
                poison = poison or response.error_kind == "poison_request"
                failed.append(f"{where}: {response.error}")
                continue
            types = self.plan.questions[prepared.question].types if self.plan.questions else ext.type_names
            answer = parse_response(response.content, list(types))
            raw, note = answer
            if response.truncated and prepared.chunk.index not in truncated:
                truncated.append(prepared.chunk.index)
            if answer.unparsable:  # not "nothing found": an error, retried by --reuse
                unparsable.append(f"{where}: {note}: {response.content[:80]!r}")
                continue
            if note and not response.truncated:
                notes.append(f"{where}: {note}")
            entities = by_chunk.setdefault(prepared.chunk.index, (prepared.chunk, []))[1]
            entities += raw
            for later in response.passes:  # further passes: their entities join the first answer's
                entities += parse_response(later.content, list(types)).entities
        parsed = list(by_chunk.values())
        chunks = len({p.chunk.index for p in work.chunks})
        asked = "chunks" if chunks == len(work.chunks) else "requests"
        mentions = cast(Mentions, ext.mentions)  # validated by ExtractionConfig
        alignment = align_document(item.text, parsed, keep_ungrounded=ext.keep_ungrounded, mentions=mentions)
        entity_dicts = [e.to_dict() for e in alignment.entities]
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
            "chunks": chunks,
            "usage": usage,
            "ungrounded": alignment.ungrounded,
        }
        if truncated:
            record["truncated_chunks"] = truncated
        if notes:
            record["warnings"] = notes
        if failed or unparsable:
            what = "failed" if failed else "got an answer with no entities list"
            record["status"] = "error"
            record["error"] = {
                "kind": "poison_request" if poison else "generation_failed" if failed else "unparsable_response",
                "message": f"{len(failed) + len(unparsable)} of {len(work.chunks)} {asked} {what}: "
                + "; ".join([*failed, *unparsable][:3]),
            }
        return record
