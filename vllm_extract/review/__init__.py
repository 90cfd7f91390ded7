"""``vllm-extract review``: one self-contained, offline HTML page to look at entities in their documents.

    from vllm_extract.review import write_review
    stats = write_review("entities.jsonl", "review.html", inputs=["docs/"], gold_path="gold.jsonl")

* ``data``: records + texts (record, ``--inputs`` or gold) + gold spans → the page's JSON payload.
* ``page``: the payload → HTML (``template.html``, ``review.css``, ``review.js`` inlined; no network).

This package never imports typer or rich; only ``vllm_extract.cli`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from ..exceptions import InputError, OutputError
from ..output.files import atomic_write
from ..run.paths import check_written_paths
from .data import InputTexts, ReviewStats, build_review_data, read_output_records
from .page import render_page

__all__ = ["InputTexts", "ReviewStats", "build_review_data", "read_output_records", "render_page", "write_review"]


def write_review(
    records_path: Path | str,
    out: Path | str,
    *,
    inputs: Sequence[str] = (),
    gold_path: Path | str | None = None,
    types: Sequence[str] | None = None,
    id_field: str = "id",
    text_field: str = "text",
    globs: Iterable[str] = ("*.txt", "*.md"),
    max_line_bytes: int = 64 * 1024 * 1024,
    overwrite: bool = False,
) -> ReviewStats:
    """Write the review page for a ``run`` output file to ``out``; return what went into it.

    ``inputs`` are the run's INPUT arguments (read again for the texts); ``gold_path`` a gold JSONL
    file (see ``vllm_extract.eval.gold``); ``types`` keeps only those entity types. Raises
    ``InputError`` for unreadable records, inputs or gold and for a text whose hash does not match
    its record's ``text_sha256``; ``OutputError`` when ``out`` cannot be written, is a file the
    page is made from (records, an input, gold), or exists (not empty) and ``overwrite`` is False.
    """
    records_path, out = Path(records_path), Path(out)
    if not records_path.is_file():
        raise InputError(f"{records_path} is not a file", hint="pass the --out file of a run")
    check_written_paths(
        {"--out": out}, inputs=inputs, globs=globs, read={"the records": records_path, "--gold": gold_path}
    )
    if out.exists() and out.stat().st_size > 0 and not overwrite:
        raise OutputError(f"{out} already exists and would be overwritten", hint="pass --overwrite to replace it")
    texts = None
    if inputs:
        texts = InputTexts.read(
            inputs, id_field=id_field, text_field=text_field, globs=globs, max_line_bytes=max_line_bytes
        )
    gold = None
    if gold_path is not None:
        from ..eval.gold import load_gold

        gold = load_gold(Path(gold_path))
    payload, stats = build_review_data(
        read_output_records(records_path), source_name=records_path.name, texts=texts, gold=gold, types=types
    )
    try:
        atomic_write(out, render_page(payload).encode("utf-8"))
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    return stats
