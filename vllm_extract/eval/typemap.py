"""Mapping gold type names onto ours (``--map PER=PERSON``, ``--map-file``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import orjson

from ..exceptions import ConfigurationError, InputError

__all__ = ["load_type_map_file", "parse_type_map"]


def parse_type_map(items: Iterable[str], *, source: str = "--map") -> dict[str, str]:
    """Parse ``GOLD=OURS`` items into ``{gold_type: our_type}``.

    Surrounding spaces are stripped. Raises ``ConfigurationError`` naming ``source`` for an item
    without ``=``, with an empty side, or mapping one gold type to two different types.
    """
    mapping: dict[str, str] = {}
    for item in items:
        gold, sep, ours = item.partition("=")
        gold, ours = gold.strip(), ours.strip()
        if not sep or not gold or not ours:
            raise ConfigurationError(f"{source}: {item!r} is not GOLD=OURS", hint="e.g. --map PER=PERSON")
        if mapping.get(gold, ours) != ours:
            raise ConfigurationError(f"{source}: {gold!r} is mapped to both {mapping[gold]!r} and {ours!r}")
        mapping[gold] = ours
    return mapping


def load_type_map_file(path: Path) -> dict[str, str]:
    """Read a type map file: a JSON object ``{"PER": "PERSON"}``, or ``GOLD=OURS`` lines (``#`` comments).

    Raises ``InputError`` when the file cannot be read and ``ConfigurationError`` when it is malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read map file {path}: {exc}") from None
    if text.lstrip().startswith("{"):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ConfigurationError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ConfigurationError(f'{path}: expected a JSON object of strings, e.g. {{"PER": "PERSON"}}')
        return parse_type_map((f"{k}={v}" for k, v in data.items()), source=str(path))
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return parse_type_map((line for line in lines if line), source=str(path))
