"""A scripted OpenAI-compatible server on 127.0.0.1 that answers every chunk with its gold entities.

The pipeline's ceiling (bench row 13, tests/test_ceiling.py): what `vllm-extract run` keeps when the
"model" answers perfectly, or perfectly but in another shape (``VARIANTS``). No engine is loaded;
the server needs only the model's tokenizer to read prompts sent as token ids.

What it finds in a request:

- ``/v1/completions`` with ``prompt`` as token ids (what the HTTP client sends when the model's
  tokenizer is on this machine, e.g. ``--model tiny``): the ids are decoded with ``tokenizer`` and
  the ChatML turns (``<|im_start|>ROLE\\n ... <|im_end|>``) read back as messages. A string prompt
  is read the same way. ``/v1/chat/completions``: its ``messages`` (follow-up passes of the HTTP
  client always come as messages).
- The chunk: the first user message that starts with ``Document:\\n`` (not the last user message:
  a later pass may add a question after it). The chunk is located in the gold document that holds
  it (``str.find``; ``unlocated`` counts chunks found in none).
- The types asked: when a user message comes after the chunk's, the types named in the last one
  (whole words, any of the gold types); none named there, or no such message: every type.

It answers ``{"entities": [{"type", "text"}, ...]}`` with the gold entities of the asked types
that lie wholly inside the chunk, in document order, shaped by ``variant``:

- ``exact``: as they are; ``drop``: every second one left out (a guard must fail on it);
- ``repeated``: the whole list twice; ``reversed``: last first; ``upper``: texts upper-cased;
- ``cut``: also the piece inside the chunk of every entity that crosses a chunk edge (the piece
  stripped of surrounding whitespace).

Grammars and schemas in ``structured_outputs`` are ignored (recorded in ``constrained``): the
answer is never refused, so the run keeps its grounded decoding.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["VARIANTS", "GoldServer", "chatml_messages"]

VARIANTS = ("exact", "repeated", "reversed", "upper", "cut", "drop")
DOCUMENT_PREFIX = "Document:\n"
_TURN = re.compile(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>|\Z)", re.DOTALL)


@dataclass(frozen=True)
class _Span:
    type: str
    start: int
    end: int


def chatml_messages(prompt: str) -> list[dict[str, str]]:
    """The messages of a ChatML prompt (the tiny model's template); the open assistant turn at the
    end (the generation prompt) is left out."""
    turns = [{"role": m.group(1), "content": m.group(2)} for m in _TURN.finditer(prompt)]
    if turns and turns[-1]["role"] == "assistant" and not turns[-1]["content"].strip():
        turns.pop()
    return turns


class GoldServer:
    """A threaded HTTP server on an ephemeral 127.0.0.1 port; ``variant`` may change between runs."""

    def __init__(self, gold: Path, tokenizer: Any = None, *, model: str = "tiny", max_model_len: int = 8192) -> None:
        self.tokenizer = tokenizer  # a Hugging Face tokenizer, to decode token-id prompts
        self.model = model
        self.max_model_len = max_model_len
        self.variant = "exact"
        self.docs: list[tuple[str, list[_Span]]] = []
        for line in gold.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                spans = [_Span(e["type"], e["start"], e["end"]) for e in record["entities"]]
                self.docs.append((record["text"], sorted(spans, key=lambda s: (s.start, s.end))))
        self.types = sorted({s.type for _, spans in self.docs for s in spans})
        self.requests: Counter[str] = Counter()  # per endpoint
        self.constrained: Counter[str] = Counter()  # structured_outputs kinds seen (ignored)
        self.unlocated = 0  # chunks found in no gold document
        self.questions = 0  # requests whose types came from a later question
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> GoldServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> GoldServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.constrained.clear()
            self.unlocated = self.questions = 0

    # -- answering ----------------------------------------------------------------------------------
    def messages_of(self, body: dict[str, Any]) -> list[dict[str, str]]:
        if "messages" in body:
            return [{"role": str(m.get("role")), "content": str(m.get("content") or "")} for m in body["messages"]]
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], list):
            prompt = prompt[0]  # a batch of one
        if isinstance(prompt, list):
            if self.tokenizer is None:
                raise ValueError("a token-id prompt needs the server's tokenizer")
            prompt = self.tokenizer.decode(prompt, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return chatml_messages(str(prompt or ""))

    def asked_types(self, messages: Sequence[dict[str, str]], after: int) -> list[str]:
        later = [m["content"] for m in messages[after + 1 :] if m["role"] == "user"]
        if not later:
            return self.types
        named = [t for t in self.types if re.search(rf"\b{re.escape(t)}\b", later[-1])]
        if named:
            with self._lock:
                self.questions += 1
        return named or self.types

    def answer(self, messages: Sequence[dict[str, str]]) -> str:
        """The JSON answer to one request (see the module docstring)."""
        index = next(
            (i for i, m in enumerate(messages) if m["role"] == "user" and m["content"].startswith(DOCUMENT_PREFIX)),
            None,
        )
        if index is None:
            return json.dumps({"entities": []})
        chunk = messages[index]["content"][len(DOCUMENT_PREFIX) :]
        types = set(self.asked_types(messages, index))
        for text, spans in self.docs:
            cs = text.find(chunk) if chunk else -1
            if cs >= 0:
                ce = cs + len(chunk)
                return json.dumps({"entities": self._shape(text, spans, cs, ce, types)}, ensure_ascii=False)
        with self._lock:
            self.unlocated += 1
        return json.dumps({"entities": []})

    def _shape(self, text: str, spans: list[_Span], cs: int, ce: int, types: set[str]) -> list[dict[str, str]]:
        asked = [s for s in spans if s.type in types]
        whole = [s for s in asked if cs <= s.start and s.end <= ce]
        inside = [{"type": s.type, "text": text[s.start : s.end]} for s in whole]
        variant = self.variant
        if variant == "repeated":
            return inside + inside
        if variant == "reversed":
            return inside[::-1]
        if variant == "upper":
            return [{"type": e["type"], "text": e["text"].upper()} for e in inside]
        if variant == "drop":
            return inside[::2]
        if variant == "cut":
            listed = [(s.start, e) for s, e in zip(whole, inside, strict=True)]
            for s in asked:
                if s.start < ce and s.end > cs and s not in whole:
                    a, b = max(s.start, cs), min(s.end, ce)
                    if text[a:b].strip():
                        listed.append((a, {"type": s.type, "text": text[a:b].strip()}))
            return [e for _, e in sorted(listed, key=lambda x: x[0])]
        if variant != "exact":
            raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
        return inside

    def completion(self, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        kind = next(iter(body.get("structured_outputs") or {}), None)
        with self._lock:
            self.requests["chat" if chat else "completions"] += 1
            if kind:
                self.constrained[str(kind)] += 1
        content = self.answer(self.messages_of(body))
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        if chat:
            choice["message"] = {"role": "assistant", "content": content}
        else:
            choice["text"] = content
        tokens = len(content) // 4 + 1
        return {
            "id": f"cmpl-{time.monotonic_ns()}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [choice],
            "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def _make_handler(server: GoldServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {})
            elif self.path == "/v1/models":
                entry = {
                    "id": server.model,
                    "object": "model",
                    "root": server.model,
                    "max_model_len": server.max_model_len,
                }
                self._send(200, {"object": "list", "data": [entry]})
            else:
                self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, {"error": {"message": "body is not JSON", "code": 400}})
                return
            if self.path in ("/v1/chat/completions", "/v1/completions"):
                try:
                    self._send(200, server.completion(body, chat=self.path == "/v1/chat/completions"))
                except ValueError as exc:
                    self._send(400, {"error": {"message": str(exc), "code": 400}})
            else:
                self._send(404, {"detail": "Not Found"})

    return Handler
