"""The ``vllm-extract`` command: a thin Typer shell over the library.

It parses flags, builds Settings (CLI > env > file > defaults), calls the library, and is the one
place that turns errors into exit codes (the table: ``exit_codes.py``; ``vllm-extract --help``).

One module per command group; each registers its commands on ``_app.app`` when imported.
"""

from __future__ import annotations

from . import eval, gpu, merge, models, review, run  # noqa: F401 - importing registers the commands
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
