"""Worked examples from the user's own gold (``--examples FILE``): a few short documents or windows
of documents, with their labelled entities, put in the instructions.

The file is a gold JSONL file, the ``eval`` format (``eval.gold``). Candidates are windows of a
document's text of at most ``MAX_EXAMPLE_CHARS`` characters, cut at paragraph breaks (a blank line)
or, inside a longer paragraph, at the last whitespace that cuts no entity; a window holds only
whole entities. Among the windows with at least one entity of the run's types, up to ``count``
are chosen greedily: each time the one that adds the most types not yet shown, then the one with
more distinct entities, then the shorter, then the earlier in the file (so the choice is a pure
function of the file and the types). Choosing stops when no window adds a type.

The examples are part of the instructions (so of the cached prefix and of the fingerprint). Never
score a run on the documents its examples came from: ``RunPlan.as_dict()["examples"]`` names them
(id and character range), and ``bench`` keeps a separate example pool.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import ConfigurationError, InputError
from ..extract.prompts import WorkedExample

__all__ = ["MAX_EXAMPLE_CHARS", "ChosenExample", "choose_examples", "load_examples"]

MAX_EXAMPLE_CHARS = 600  # about 150 tokens of English: a few examples cost a few hundred prompt tokens, once


@dataclass(frozen=True)
class ChosenExample:
    """A worked example and where it came from: gold document ``source_id``, characters
    ``[start, end)`` of its text."""

    source_id: str
    start: int
    end: int
    example: WorkedExample

    def as_dict(self) -> dict[str, object]:
        return {"id": self.source_id, "start": self.start, "end": self.end, "entities": len(self.example.entities)}


@dataclass(frozen=True)
class _Window:
    source_id: str
    order: int
    start: int
    end: int
    text: str
    entities: tuple[tuple[str, str], ...]

    @property
    def types(self) -> set[str]:
        return {t for t, _ in self.entities}


def _cuts(text: str, spans: Sequence[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` covering ``text`` in order, each at most ``limit`` characters, cut at
    blank lines when one fits, else at the last whitespace inside no span (a window that cannot be
    cut so is left out)."""
    inside = [False] * (len(text) + 1)
    for start, end in spans:
        for i in range(start + 1, end):
            inside[i] = True
    breaks = {m.end() for m in re.finditer(r"\n\s*\n", text)}
    windows = []
    start = 0
    while start < len(text):
        stop = min(len(text), start + limit)
        if stop < len(text):
            paragraph = [b for b in breaks if start < b <= stop and not inside[b]]
            space = [i for i in range(stop, start, -1) if text[i - 1].isspace() and not inside[i]]
            cut = max(paragraph) if paragraph else (space[0] if space else None)
            if cut is None:  # no place to cut: skip to the next break
                later = [b for b in sorted(breaks) if b > stop]
                start = later[0] if later else len(text)
                continue
            stop = cut
        windows.append((start, stop))
        start = stop
    return windows


def _windows(
    source_id: str, order: int, text: str, entities: Sequence[tuple[str, int, int]], limit: int
) -> list[_Window]:
    found = []
    for start, end in _cuts(text, [(s, e) for _, s, e in entities], limit):
        inner = sorted((s, e, t) for t, s, e in entities if start <= s and e <= end)
        pairs: list[tuple[str, str]] = []
        for s, e, t in inner:
            if (t, text[s:e]) not in pairs:
                pairs.append((t, text[s:e]))
        piece = text[start:end]
        lead = len(piece) - len(piece.lstrip())
        if pairs:
            found.append(_Window(source_id, order, start + lead, end, piece.strip(), tuple(pairs)))
    return found


def choose_examples(
    documents: Sequence[tuple[str, str, Sequence[tuple[str, int, int]]]],
    types: Sequence[str],
    count: int,
    *,
    max_chars: int = MAX_EXAMPLE_CHARS,
) -> list[ChosenExample]:
    """Up to ``count`` worked examples from ``documents`` (``(id, text, [(type, start, end)])``),
    showing only entities of ``types`` (see the module docstring for the rule)."""
    wanted = set(types)
    candidates: list[_Window] = []
    for order, (doc_id, text, spans) in enumerate(documents):
        kept = [(t, s, e) for t, s, e in spans if t in wanted]
        candidates += _windows(doc_id, order, text, kept, max_chars)
    chosen: list[_Window] = []
    shown: set[str] = set()
    while len(chosen) < count:
        best = min(
            (w for w in candidates if w not in chosen),
            key=lambda w: (-len(w.types - shown), -len(w.entities), len(w.text), w.order, w.start),
            default=None,
        )
        if best is None or not best.types - shown:
            break
        chosen.append(best)
        shown |= best.types
    return [ChosenExample(w.source_id, w.start, w.end, WorkedExample(w.text, w.entities)) for w in chosen]


def load_examples(path: str, types: Sequence[str], count: int) -> list[ChosenExample]:
    """The worked examples of ``--examples PATH`` for a run over ``types``. Raises
    ``ConfigurationError`` (exit 2, before any engine loads) when the file cannot be read as gold,
    or none of its documents has text and an entity of these types."""
    from ..eval.gold import load_gold

    try:
        gold = load_gold(Path(path))
    except InputError as exc:
        raise ConfigurationError(f"--examples {path}: {exc}", hint="give a gold JSONL file (the eval format)") from None
    documents = [
        (doc.id, doc.text, [(span.type, span.start, span.end) for span in doc.entities])
        for doc in gold.values()
        if doc.text
    ]
    chosen = choose_examples(documents, types, count)
    if count and not chosen:
        raise ConfigurationError(
            f"--examples {path}: no document has text and an entity of the run's types ({', '.join(types)})",
            hint="give gold documents with their text and spans of these types",
        )
    return chosen
