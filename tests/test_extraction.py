"""The extraction task: schema and prompts (parsing and alignment are in test_alignment.py)."""

from __future__ import annotations

import json

from vllm_extract.config import EntityType, ExtractionConfig
from vllm_extract.extract.prompts import build_instructions, build_messages, build_schema

# --- schema and prompts ----------------------------------------------------------------------


def test_build_schema_bounds() -> None:
    config = ExtractionConfig(
        entity_types=(EntityType("PERSON", "a person"), EntityType("MONEY")),
        max_entities_per_chunk=17,
        max_entity_chars=55,
    )
    schema = build_schema(config)
    entities = schema["properties"]["entities"]
    assert schema["required"] == ["entities"]
    assert schema["additionalProperties"] is False
    assert entities["type"] == "array"
    assert entities["maxItems"] == 17
    item = entities["items"]
    assert item["properties"]["type"] == {"type": "string", "enum": ["PERSON", "MONEY"]}
    assert item["properties"]["text"] == {"type": "string", "minLength": 1, "maxLength": 55}
    assert item["required"] == ["type", "text"]
    assert item["additionalProperties"] is False
    json.dumps(schema)  # serialisable as is


def test_instructions_and_messages() -> None:
    types = (EntityType("PERSON", "A named individual."), EntityType("MONEY"))
    text = build_instructions(types)
    assert "- PERSON: A named individual." in text
    assert text.endswith("- MONEY")
    messages = build_messages(text, "Chunk body")
    assert messages == [
        {"role": "system", "content": text},
        {"role": "user", "content": "Document:\nChunk body"},
    ]
