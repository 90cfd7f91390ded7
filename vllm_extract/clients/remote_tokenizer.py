"""Token counts from a vLLM server: ``RemoteTokenizer`` asks its ``/tokenize`` endpoint.

Used by the HTTP transport (``http.HTTPVLLMClient.get_tokenizer``) when the model's files are not
on this machine; the run plan prefers a local tokenizer. Also the two helpers both HTTP modules
share: ``error_text`` (a server's error message) and ``describe_error`` (a failed request's
reason). ``httpx`` is imported where it is used (see ``http``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..exceptions import ConnectionError, GenerationError
from ..extract.tokens import EstimateTokenizer

if TYPE_CHECKING:
    import httpx

__all__ = ["CONNECT_TIMEOUT", "RemoteTokenizer", "describe_error", "error_text"]

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]

CONNECT_TIMEOUT = 10.0  # seconds to open a connection, at most (every HTTP call of the clients)


class RemoteTokenizer:
    """Exact token counts from a vLLM server's ``/tokenize`` endpoint (synchronous ``httpx.Client``).

    ``offsets`` delegates to ``EstimateTokenizer`` (chunk cut points only); ``encode_chat`` is
    exact: the server applies the model's chat template. When the server has no ``/tokenize``
    (404) the tokenizer switches to an estimate, logs a warning and sets ``exact = False``.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.exact = True
        self.name = f"remote /tokenize ({model} at {self.base_url})"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
            transport=transport,
        )
        self._estimate = EstimateTokenizer()
        self._fallback = False

    def _tokenize(self, body: dict[str, Any]) -> list[int] | None:
        """Token ids from the server, or None once it turned out to have no /tokenize."""
        import httpx

        if self._fallback:
            return None
        try:
            response = self._client.post("/tokenize", json={"model": self.model, **body})
        except httpx.HTTPError as exc:
            raise ConnectionError(
                f"cannot reach {self.base_url}/tokenize: {describe_error(exc)}",
                base_url=self.base_url,
                hint="check that the vLLM server is running",
            ) from exc
        if response.status_code in (404, 405) and "model" not in response.text.lower():
            logger.warning("%s has no /tokenize endpoint: token counts are estimates", self.base_url)
            self._fallback = True
            self.exact = False
            self.name = self._estimate.name
            return None
        if response.status_code != 200:
            raise GenerationError(
                f"/tokenize on {self.base_url} answered {response.status_code}: {error_text(response)}",
                status_code=response.status_code,
                hint="check the model name and the server log",
            )
        return [int(t) for t in response.json()["tokens"]]

    def probe(self) -> None:
        """Tokenize a word once, so a missing /tokenize is found before any count is trusted."""
        self.encode("probe")

    def encode(self, text: str) -> list[int]:
        tokens = self._tokenize({"prompt": text, "add_special_tokens": False})
        return self._estimate.encode(text) if tokens is None else tokens

    def encode_chat(self, messages: Messages) -> list[int]:
        tokens = self._tokenize({"messages": messages, "add_generation_prompt": True})
        return self._estimate.encode_chat(messages) if tokens is None else tokens

    def render_chat(self, messages: Messages) -> str:
        # Only counts matter to callers; the server renders the real template in encode_chat.
        return self._estimate.render_chat(messages)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self._estimate.offsets(text)

    def close(self) -> None:
        self._client.close()


def error_text(response: httpx.Response) -> str:
    """The server's error message (vLLM / OpenAI JSON shapes), else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:500].strip()
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    if isinstance(data, dict) and (text := err or data.get("message") or data.get("detail")):
        return str(text)
    return str(data)[:500]


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed request or probe (the class name when the text is empty)."""
    import httpx

    text, name = str(exc).strip() or type(exc).__name__, type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({name})"
    if isinstance(exc, httpx.ConnectError):
        return f"connection refused or unreachable ({text})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection dropped ({text})"
    return text if text == name else f"{text} ({name})"
