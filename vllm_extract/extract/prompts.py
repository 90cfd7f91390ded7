"""What the model is asked: the shared instructions, the chat messages and the JSON schema.

Prompts put the shared instructions first (system message) and the chunk last (user message) so
prefix caching reuses the instructions across every request of a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config import EntityType, ExtractionConfig

__all__ = ["build_instructions", "build_messages", "build_schema"]


def build_schema(config: ExtractionConfig) -> dict[str, Any]:
    """The JSON schema every response must follow (bounded list, bounded strings)."""
    return {
        "type": "object",
        "properties": {
            "entities": {
                "type": "array",
                "maxItems": config.max_entities_per_chunk,
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": config.type_names},
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


def build_instructions(types: Sequence[EntityType]) -> str:
    """The shared instruction text (identical for every chunk of a run: it is the cached prefix).

    Measured on examples/gold/ (bench row 8), neither a worked example nor sharper per-type
    descriptions raised strict F1 with the tiny model, so the instructions stay this short.
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
    return "\n".join(lines)


def build_messages(instructions: str, chunk_text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": instructions},
        {"role": "user", "content": "Document:\n" + chunk_text},
    ]
