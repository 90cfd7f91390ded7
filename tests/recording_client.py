"""A real client that keeps what a run sent and received: the seam the engine tests watch a run
through (no fake: every request goes to the real engine)."""

from __future__ import annotations

from typing import Any

from vllm_extract.clients.base import VLLMClientInterface, VLLMRequest
from vllm_extract.clients.stream import RequestStream, StreamResult

__all__ = ["RecordingClient", "RecordingStream"]


class RecordingStream(RequestStream):
    """A real client's stream that keeps every submission (one list per ``submit`` call) and every
    result."""

    def __init__(self, inner: RequestStream, submissions: list[list[VLLMRequest]], results: list[StreamResult]) -> None:
        self.inner = inner
        self.stats = inner.stats
        self.submissions = submissions
        self.results = results

    async def submit(self, items: Any) -> None:
        self.submissions.append([i.request for i in items])
        await self.inner.submit(items)

    def flush(self) -> None:
        self.inner.flush()

    def end(self) -> None:
        self.inner.end()

    async def __aiter__(self) -> Any:
        async for result in self.inner:
            self.results.append(result)
            yield result

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def outstanding(self) -> int:
        return self.inner.outstanding


class RecordingClient(VLLMClientInterface):
    """Passes a run's stream to a real client and keeps what was actually sent."""

    def __init__(self, inner: VLLMClientInterface) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.client_type = inner.client_type
        self.engine_info = inner.engine_info  # the dtype and step budget the run reports
        self.batches: list[list[VLLMRequest]] = []  # one list per submission (one document)
        self.results: list[StreamResult] = []  # every final response, as the run received them

    async def connect(self) -> bool:
        return True

    def open_stream(self, **kwargs: Any) -> RequestStream:
        return RecordingStream(self.inner.open_stream(**kwargs), self.batches, self.results)

    def get_tokenizer(self) -> Any:
        return self.inner.get_tokenizer()

    @property
    def max_model_len(self) -> int:
        return self.inner.max_model_len
