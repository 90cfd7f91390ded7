"""`vllm-extract merge`: join the outputs of `run --shard I/N` into one output in input order."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..exceptions import MergeError, VLLMClientError
from ._app import _fail, _setup_logging, app, err
from .exit_codes import ExitCode


@app.command()
def merge(
    shards: Annotated[list[Path], typer.Argument(help="The shard outputs (OUT-*.jsonl), each with its .shard.json.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The merged output JSONL.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Merge shard outputs into one file in input order, after checking they add up to one run.

    Every shard 0..N-1 must be given once and finished (its OUT.shard.json manifest), all from one run (fingerprint) over the same inputs, every input exactly once. Otherwise nothing is written, each missing or duplicated document and each missing shard is named, and the exit code is 5.

    Example: vllm-extract merge out-*.jsonl --out out.jsonl
    """  # noqa: E501 - one paragraph per line: Typer rewraps help text
    _setup_logging(False, False)
    from ..run.merge import merge_shards

    try:
        result = merge_shards(shards, out, overwrite=overwrite)
    except MergeError as exc:
        for problem in exc.problems:
            err.print(f"[red]problem:[/] {escape(problem)}", highlight=False, markup=True, soft_wrap=True)
        raise _fail(exc) from None
    except VLLMClientError as exc:
        raise _fail(exc) from None
    err.print(
        f"merged {result.shards} shards: {result.records} records ({result.ok} ok, {result.errors} errors) "
        f"of {result.inputs_total} inputs into {result.out}",
        highlight=False,
    )
    raise typer.Exit(ExitCode.OK)
