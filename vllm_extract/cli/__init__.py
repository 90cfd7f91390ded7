"""The ``vllm-extract`` command: a thin Typer shell over the library.

It parses flags, builds Settings (CLI > env > file > defaults), calls the library, and is the one
place that turns errors into exit codes:

    0  every document ok            1  finished, some documents failed
    2  usage or configuration error 3  GPU, model or server unavailable
    4  output lock held by another run
    130 / 143  interrupted by SIGINT / SIGTERM (finished work is kept; rerun with --resume)

One module per command group; each registers its commands on ``_app.app`` when imported.
"""

from __future__ import annotations

from . import eval, gpu, merge, models, review, run  # noqa: F401 - importing registers the commands
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
