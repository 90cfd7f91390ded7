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


# A worked example for the instructions: its names are in no document, and grounded decoding only
# lets the model write spans of the chunk it reads, so they cannot be copied into an answer.
EXAMPLE_TEXT = "On May 2, 2024, Judge Ann Lee of the Ninth Circuit fined Acme Corp. $5,000 in Reno."
EXAMPLE_ENTITIES = (
    ("DATE", "May 2, 2024"),
    ("JUDGE", "Ann Lee"),
    ("COURT", "Ninth Circuit"),
    ("ORGANIZATION", "Acme Corp."),
    ("MONEY", "$5,000"),
    ("LOCATION", "Reno"),
)


def build_instructions(types: Sequence[EntityType], *, example: bool = False) -> str:
    """The shared instruction text (identical for every chunk of a run: it is the cached prefix).

    ``example`` adds a one-sentence worked example (only the entities of configured types).
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
    names = {t.name for t in types}
    shown = [{"type": k, "text": v} for k, v in EXAMPLE_ENTITIES if k in names]
    if example and shown:
        import json

        answer = json.dumps({"entities": shown}, separators=(",", ":"))
        lines += ["Example document:", EXAMPLE_TEXT, "Example answer:", answer]
    return "\n".join(lines)


def build_messages(instructions: str, chunk_text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": instructions},
        {"role": "user", "content": "Document:\n" + chunk_text},
    ]
