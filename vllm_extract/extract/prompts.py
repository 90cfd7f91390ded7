"""What the model is asked: the shared instructions, the question of a request, the chat messages,
the JSON schema and the follow-up of a further pass.

Prompts put what every request of a run shares first, so vLLM's prefix cache computes it once:

- ``all-types`` (the default): the instructions (system message, with any worked examples), then
  the chunk (user message). One request per chunk.
- ``per-type``: the instructions, then the chunk (a user message of its own), then the question
  about one type or group of types (a second user message). Every question about a chunk shares
  the instructions and the chunk: with a chat template that ends a turn with a control token
  (ChatML: ``<|im_end|>``), the prompt's token ids up to the question are the same for each, by
  construction (``HFTokenizer.encode_chat`` encodes each message's content on its own).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import EntityType, ExtractionConfig

__all__ = [
    "FOLLOWUP_MESSAGE",
    "WorkedExample",
    "build_instructions",
    "build_messages",
    "build_question",
    "build_schema",
]

FOLLOWUP_MESSAGE = (
    "List the entities of the document that you have not listed yet, in the same JSON form. "
    "Return an empty list when there are no more."
)


@dataclass(frozen=True)
class WorkedExample:
    """A worked example for the instructions: a short text and its entities ``(type, text)`` in
    order of appearance, each distinct pair once (the answer the model should give)."""

    text: str
    entities: tuple[tuple[str, str], ...]

    def answer(self) -> str:
        """The answer as compact JSON, exactly the form the grammar accepts."""
        items = [{"type": t, "text": x} for t, x in self.entities]
        return json.dumps({"entities": items}, ensure_ascii=False, separators=(",", ":"))


def build_schema(config: ExtractionConfig, types: Sequence[str] | None = None) -> dict[str, Any]:
    """The JSON schema a response must follow (bounded list, bounded strings); ``types``: the type
    names a request may answer with (default: every type of ``config``)."""
    return {
        "type": "object",
        "properties": {
            "entities": {
                "type": "array",
                "maxItems": config.max_entities_per_chunk,
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": list(types or config.type_names)},
                        "text": {"type": "string", "minLength": 1, "maxLength": config.max_entity_chars},
                    },
                    "required": ["type", "text"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["entities"],
        "additionalProperties": False,
    }


def build_instructions(types: Sequence[EntityType], examples: Sequence[WorkedExample] = ()) -> str:
    """The shared instruction text (identical for every request of a run: it is the cached prefix).

    ``examples`` (from ``--examples``) are appended as worked examples, each a document and its
    answer. Measured on examples/gold/ (bench row 8), neither a hand-written worked example nor
    sharper per-type descriptions raised strict F1 with the tiny model, so without ``--examples``
    the instructions stay this short.
    """
    lines = [
        "You extract named entities from legal and business documents.",
        'Return JSON of the form {"entities": [{"type": TYPE, "text": TEXT}, ...]}.',
        "Copy each entity's text exactly as it appears in the document; do not paraphrase, translate "
        "or invent. List each distinct mention once. Return an empty list when there are none.",
        "Entity types:",
    ]
    for t in types:
        lines.append(f"- {t.name}: {t.description}" if t.description else f"- {t.name}")
    if examples:
        lines.append(
            "Worked examples follow. They come from other documents: never list their entities "
            "unless the same text is in the document you are given."
        )
        for number, example in enumerate(examples, 1):
            lines += [f"Example {number} document:", example.text, f"Example {number} answer:", example.answer()]
    return "\n".join(lines)


def build_question(types: Sequence[EntityType]) -> str:
    """The question of a ``per-type`` request: list only the entities of these types."""
    named = "; ".join(f"{t.name} ({t.description})" if t.description else t.name for t in types)
    kind = "type" if len(types) == 1 else "types"
    return (
        f"List only the entities of {kind} {named} in the document above, in the same JSON form. "
        "Return an empty list when there are none."
    )


def build_messages(instructions: str, chunk_text: str, question: str | None = None) -> list[dict[str, str]]:
    """The chat messages of one request: instructions, the chunk, and a ``per-type`` question."""
    messages = [
        {"role": "system", "content": instructions},
        {"role": "user", "content": "Document:\n" + chunk_text},
    ]
    if question is not None:
        messages.append({"role": "user", "content": question})
    return messages
