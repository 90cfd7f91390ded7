"""A small, real OpenAI-compatible HTTP server on 127.0.0.1 whose faults tests can script.

Endpoints: ``/health``, ``/v1/models`` (one model), ``/v1/chat/completions`` (a valid completion
whose content is ``{"entities": [{"type": "PERSON", "text": <first capitalized word of the last
user message>}]}``) and, when ``tokenize=True``, ``/tokenize`` (one token per whitespace word).

Faults, applied to chat completions only:

- ``fail_next(kind, n)``: the next ``n`` chat requests (in arrival order) get ``kind``;
- ``plan[prompt] = [kind, ...]``: attempt *i* for that prompt gets ``plan[prompt][i]``;
- ``always = kind``: every chat request gets ``kind``.

Kinds: ``"503"``, ``"429"`` (with ``Retry-After: 0``), ``"drop"`` (close the socket without an
answer), ``"slow"`` (sleep ``slow_seconds`` before answering), ``"400"`` (a plain bad request),
``"overflow"`` (vLLM's 400 for a prompt over the context length), ``"ok"``.

Answers: ``answers[word] = content`` (or ``(content, finish_reason)``) answers every chat request
whose prompt contains ``word`` with that content instead (the first key found, in insertion order):
a model that writes prose, other JSON, or an answer cut at ``max_tokens`` (``"length"``).

Counters: ``seen[prompt]`` (attempts per prompt, prompt = last user message), ``answered[prompt]``
(successful answers), ``bodies`` (every chat request body) and ``headers`` (every request's headers).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FAULT_KINDS", "MisbehavingServer", "first_capitalized"]

FAULT_KINDS = ("503", "429", "drop", "slow", "400", "overflow", "bad_usage", "ok")
_CAPITALIZED = re.compile(r"\b[A-Z][A-Za-z]*")


def first_capitalized(text: str) -> str:
    """The first capitalized word of ``text`` (``"Unknown"`` when there is none)."""
    match = _CAPITALIZED.search(text)
    return match.group(0) if match else "Unknown"


class MisbehavingServer:
    """A threaded HTTP server on an ephemeral 127.0.0.1 port. Use as a context manager or start/stop."""

    def __init__(
        self,
        *,
        model: str = "test-model",
        max_model_len: int = 4096,
        slow_seconds: float = 1.0,
        tokenize: bool = False,
        healthy: bool = True,
    ) -> None:
        self.model = model
        self.max_model_len = max_model_len
        self.slow_seconds = slow_seconds
        self.tokenize = tokenize
        self.healthy = healthy
        self.always: str | None = None
        self.refuse_grammars = False  # answer 400 to any request whose structured_outputs has a grammar
        self.plan: dict[str, list[str]] = {}
        self.answers: dict[str, str | tuple[str, str]] = {}
        self.seen: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._queue: list[str] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def chat_requests(self) -> int:
        """Every chat completion attempt received so far."""
        return sum(self.seen.values())

    def fail_next(self, kind: str, n: int = 1) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        with self._lock:
            self._queue.extend([kind] * n)

    def start(self) -> MisbehavingServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="misbehaving-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MisbehavingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _fault_for(self, prompt: str, body: dict[str, Any]) -> str:
        """Record the attempt and decide what to do with it."""
        with self._lock:
            attempt = self.seen[prompt]
            self.seen[prompt] += 1
            self.bodies.append(body)
            if self.always is not None:
                kind = self.always
            elif self._queue:
                kind = self._queue.pop(0)
            else:
                planned = self.plan.get(prompt, [])
                kind = planned[attempt] if attempt < len(planned) else "ok"
            self.faults[kind] += 1
            return kind

    def completion(self, body: dict[str, Any], prompt: str) -> dict[str, Any]:
        content = json.dumps({"entities": [{"type": "PERSON", "text": first_capitalized(prompt)}]})
        finish_reason = "stop"
        for word, answer in self.answers.items():
            if word in prompt:
                content, finish_reason = answer if isinstance(answer, tuple) else (answer, "stop")
                break
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        completion_tokens = len(content.split())
        with self._lock:
            self.answered[prompt] += 1
        return {
            "id": f"chatcmpl-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of concurrent connects must not overflow the backlog


def _last_user_message(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def _error(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _make_handler(server: MisbehavingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout) and closed the socket
                self.close_connection = True

        def _record_headers(self) -> None:
            with server._lock:
                server.headers.append({k.lower(): v for k, v in self.headers.items()})

        def do_GET(self) -> None:
            self._record_headers()
            if self.path == "/health":
                if server.healthy:
                    self._send(200, {})
                else:
                    self._send(503, _error("engine is not ready", "ServiceUnavailable", 503))
            elif self.path == "/v1/models":
                entry = {
                    "id": server.model,
                    "object": "model",
                    "owned_by": "vllm",
                    "root": server.model,
                    "max_model_len": server.max_model_len,
                }
                self._send(200, {"object": "list", "data": [entry]})
            else:
                self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            self._record_headers()
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, _error("body is not JSON", "BadRequestError", 400))
                return
            if self.path == "/tokenize" and server.tokenize:
                if "messages" in body:
                    text = " ".join(f"<{m['role']}> {m['content']}" for m in body["messages"]) + " <assistant>"
                else:
                    text = str(body.get("prompt", ""))
                tokens = list(range(len(text.split())))
                self._send(200, {"count": len(tokens), "max_model_len": server.max_model_len, "tokens": tokens})
                return
            if self.path != "/v1/chat/completions":
                self._send(404, {"detail": "Not Found"})
                return
            prompt = _last_user_message(body)
            kind = server._fault_for(prompt, body)
            if server.refuse_grammars and "grammar" in (body.get("structured_outputs") or {}):
                self._send(400, _error("structured_outputs.grammar is not supported", "BadRequestError", 400))
                return
            if kind == "503":
                self._send(503, _error("engine overloaded", "ServiceUnavailable", 503))
            elif kind == "429":
                self._send(429, _error("too many requests", "RateLimitError", 429), {"Retry-After": "0"})
            elif kind == "drop":
                self.close_connection = True  # no answer at all: the socket is closed
            elif kind == "400":
                self._send(400, _error("'messages' is malformed", "BadRequestError", 400))
            elif kind == "overflow":
                message = (
                    f"This model's maximum context length is {server.max_model_len} tokens. "
                    "However, your prompt contains at least 99999 input tokens. "
                    "Please reduce the length of the input prompt."
                )
                self._send(400, _error(message, "BadRequestError", 400))
            elif kind == "bad_usage":
                self._send(200, server.completion(body, prompt) | {"usage": "x"})
            else:
                if kind == "slow":
                    time.sleep(server.slow_seconds)
                self._send(200, server.completion(body, prompt))

    return Handler
