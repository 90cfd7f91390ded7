"""`vllm-extract review`: one self-contained HTML page to look at a run's entities in their documents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..exceptions import VLLMClientError
from ._app import ConfigOpt, GlobOpt, IdFieldOpt, SettingsFlags, TextFieldOpt, _fail, _settings, app, err


@app.command(
    epilog="Exit codes: 0 page written; 2 unreadable records, inputs or gold, a text hash mismatch, or an "
    "--out that exists (without --overwrite) or is a file the page is made from."
)
def review(
    records: Annotated[Path, typer.Argument(help="The run's output JSONL (its --out).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write (self-contained, works offline).")],
    inputs: Annotated[
        list[str] | None,
        typer.Option("--inputs", help="An INPUT the run read (repeatable), to show each document's text."),
    ] = None,
    gold: Annotated[
        Path | None, typer.Option("--gold", help="Gold JSONL: mark matches, false positives and missed spans.")
    ] = None,
    types: Annotated[str | None, typer.Option("--types", help="Show only these entity types: PERSON,DATE,...")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    id_field: IdFieldOpt = None,
    text_field: TextFieldOpt = None,
    glob: GlobOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write an HTML page showing each document's text with its entities highlighted.

    Text comes from the record (converted PDFs carry it), else from --inputs, else from the gold file.

    Example: vllm-extract review entities.jsonl --inputs docs/ --out review.html
    """
    from ..review import write_review

    try:
        settings = _settings(config, SettingsFlags(id_field=id_field, text_field=text_field, glob=glob))
        ext = settings.extraction
        wanted = [t.strip() for t in types.split(",") if t.strip()] if types else None
        stats = write_review(
            records,
            out,
            inputs=inputs or (),
            gold_path=gold,
            types=wanted,
            id_field=ext.id_field,
            text_field=ext.text_field,
            globs=ext.globs,
            max_line_bytes=ext.max_line_bytes,
            overwrite=overwrite,
        )
    except VLLMClientError as exc:
        raise _fail(exc) from None
    for warning in stats.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    size = out.stat().st_size
    err.print(
        f"wrote {out} ({size / 1e6:.1f} MB): {stats.documents} documents, {stats.entities} entities, "
        f"{stats.errors} with errors, {stats.without_text} without text",
        highlight=False,
    )
