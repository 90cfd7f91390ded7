"""The ``vllm-extract`` command: a thin Typer shell over the library.

It parses flags, builds Settings (CLI > env > file > defaults), calls the library, and is the one
place that turns errors into exit codes (the table: ``exit_codes.py``; ``vllm-extract --help``).

One module per command group; each registers its commands on ``_app.app`` when imported.
"""

from __future__ import annotations

import sys

from . import eval, gpu, merge, models, review, run  # noqa: F401 - importing registers the commands
from ._app import app, closed_pipe, exit_quietly_on_closed_pipes

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point. Output still buffered when the command ends is flushed here,
    so that a reader gone by then (``| head``) is exit 141 too, not "Exception ignored" and 120."""
    exit_quietly_on_closed_pipes()
    try:
        app()
    except SystemExit as exit:
        code = exit.code
    else:
        code = 0
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = closed_pipe().exit_code
    sys.exit(code)
