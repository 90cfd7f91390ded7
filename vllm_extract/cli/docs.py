"""The README's generated tables: ``python -m vllm_extract.cli.docs README.md`` rewrites them.

Each generated region of the README sits between two HTML comments (invisible when rendered)::

    <!-- generated: NAME -->
    ...table made by the code...
    <!-- end generated: NAME -->

``REGIONS`` names each region and the function that makes its text: the record's fields and the
error kinds (``output.records``, from the pydantic model and ``ERROR_KIND_DOCS``) and the exit
codes (``exit_codes.TABLE``, which ``--help`` shows too). ``tests/test_cli_docs.py`` fails when the
README differs from ``render(README)``; run the command above and commit the result.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from ..output.records import error_kinds_markdown, record_fields_markdown
from .exit_codes import markdown as exit_codes_markdown

__all__ = ["COMMAND", "REGIONS", "main", "render"]

COMMAND = "python -m vllm_extract.cli.docs README.md"

REGIONS: dict[str, Callable[[], str]] = {
    "record-fields": record_fields_markdown,
    "error-kinds": error_kinds_markdown,
    "exit-codes": exit_codes_markdown,
}

_REGION = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.S)


def render(text: str) -> str:
    """``text`` with every generated region's body made anew. Raises ``ValueError`` naming a
    region of ``REGIONS`` that ``text`` lacks, or one it has that ``REGIONS`` does not know."""
    found: list[str] = []

    def body(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in REGIONS:
            raise ValueError(f"unknown generated region {name!r} (known: {', '.join(REGIONS)})")
        found.append(name)
        return match[1] + REGIONS[name]() + match[4]

    result = _REGION.sub(body, text)
    missing = [name for name in REGIONS if name not in found]
    if missing:
        raise ValueError(f"no generated region {', '.join(missing)}: mark it with <!-- generated: NAME -->")
    return result


def main(argv: list[str]) -> int:
    """``COMMAND``: rewrite the file's generated regions in place; 0 when done, 2 on bad usage."""
    if len(argv) != 1:
        print(f"usage: {COMMAND}", file=sys.stderr)
        return 2
    path = Path(argv[0])
    old = path.read_text(encoding="utf-8")
    new = render(old)
    if new != old:
        path.write_text(new, encoding="utf-8")
    print(f"{path}: {'updated' if new != old else 'up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
