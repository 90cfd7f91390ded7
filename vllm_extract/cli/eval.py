"""`vllm-extract eval` (score a run against gold spans) and `vllm-extract gold from-conll`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..exceptions import OutputError, VLLMClientError
from ._app import _fail, app, err
from .exit_codes import ExitCode

if TYPE_CHECKING:
    from ..eval import EvalResult

EVAL_EXIT_HELP = (
    "Exit codes (of the table in `vllm-extract --help`): 0 scored; 1 strict micro F1 below --min-f1; "
    "2 usage or input error (bad JSONL, duplicate ids, gold span not matching its text, bad --map, "
    "no gold document in PRED)."
)

gold_app = typer.Typer(help="Build gold files (hand-labelled spans) for `vllm-extract eval`.", no_args_is_help=True)
app.add_typer(gold_app, name="gold")


@app.command("eval", epilog=EVAL_EXIT_HELP)
def eval_command(
    pred: Annotated[Path, typer.Argument(help="A `vllm-extract run` output (JSONL).")],
    gold: Annotated[
        Path, typer.Option("--gold", "-g", help="Gold JSONL: {id, text?, entities: [{type, start, end}]}.")
    ],
    type_map: Annotated[
        list[str] | None,
        typer.Option("--map", help="Rename a gold type onto ours: GOLD=OURS, e.g. PER=PERSON (repeatable)."),
    ] = None,
    map_file: Annotated[
        Path | None,
        typer.Option("--map-file", help='File of GOLD=OURS lines, or a JSON object {"PER": "PERSON"}; --map wins.'),
    ] = None,
    types: Annotated[
        str | None,
        typer.Option(
            "--types",
            help="Types the run was asked for, comma-separated (default: the default types). A gold type outside "
            "them that nothing predicts is reported as unmapped, not scored.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    min_f1: Annotated[
        float | None,
        typer.Option("--min-f1", min=0.0, max=1.0, help="Exit 1 when strict micro F1 is below this (0 to 1)."),
    ] = None,
) -> None:
    """Score PRED against gold spans: precision, recall, F1 (SemEval-2013 strict, exact, partial, type).

    Gold documents missing from PRED or with status error there: all their entities count as missed.

    Example: vllm-extract eval entities.jsonl --gold examples/gold/gold.jsonl --min-f1 0.5
    """
    from ..eval import evaluate, load_gold, load_predictions, load_type_map_file, parse_type_map

    try:
        mapping = load_type_map_file(map_file) if map_file is not None else {}
        mapping.update(parse_type_map(type_map or []))
        expected = [t.strip() for t in types.split(",") if t.strip()] if types else None
        gold_docs = load_gold(gold)
        predictions = load_predictions(pred)
        result = evaluate(gold_docs, predictions, type_map=mapping, expected_types=expected)
        _refuse_disjoint_ids(result, gold, pred)
    except VLLMClientError as exc:
        raise _fail(exc) from None
    if as_json:
        import orjson

        sys.stdout.write(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_result(result)
    if min_f1 is not None and result.strict_f1 < min_f1:
        err.print(f"strict micro F1 {result.strict_f1:.4f} is below --min-f1 {min_f1}", highlight=False)
        raise typer.Exit(ExitCode.DOCUMENT_ERRORS)  # the result falls short: code 1 of the table


def _refuse_disjoint_ids(result: EvalResult, gold: Path, pred: Path) -> None:
    """No gold document is in PRED: a wrong file or another id scheme, never a score (it used to
    print F1 0 and exit 0). Raises ``InputError`` (exit 2) with an id of each side."""
    counts = result.documents
    if counts.gold == 0 or len(counts.missing) < counts.gold:
        return
    from ..exceptions import InputError

    theirs = f" (e.g. {counts.pred_without_gold[0]!r})" if counts.pred_without_gold else ""
    raise InputError(
        f"no document of {pred}{theirs} is in the gold file {gold} (e.g. {counts.missing[0]!r}): nothing to score",
        hint="check that PRED is the run over the gold documents and that both use the same ids (--id-field)",
    )


def _print_result(result: EvalResult) -> None:
    from rich.console import Console

    from ..eval.render import aligned, notes, render_text, schema_table, type_table

    out = Console()
    tables = (("micro and macro", schema_table(result)), ("per type (strict unless named)", type_table(result)))
    widest = max(len(line) for _, table in tables for line in aligned(table).splitlines())
    if not out.is_terminal or out.width < widest:
        sys.stdout.write(render_text(result))
        return
    from rich.table import Table

    lines = notes(result)
    out.print(lines[0], highlight=False)
    for title, (headers, rows) in tables:
        table = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
        for i, header in enumerate(headers):
            table.add_column(header, justify="left" if i == 0 else "right", no_wrap=True)
        for row in rows:
            table.add_row(*row)
        out.print(table)
    for line in lines[1:]:
        out.print(line, highlight=False, style="yellow")


@gold_app.command("from-conll")
def gold_from_conll(
    file: Annotated[Path, typer.Argument(help="CoNLL/BIO file: token ... tag per line (IOB1, IOB2, IOBES).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Gold JSONL to write; - for stdout.")],
    id_prefix: Annotated[
        str | None, typer.Option("--id-prefix", help="Document ids are PREFIX-1, PREFIX-2, ... (default: file stem).")
    ] = None,
    per_sentence: Annotated[
        bool, typer.Option("--per-sentence", help="Every sentence is its own document (files without -DOCSTART-).")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
) -> None:
    """Turn a CoNLL/BIO file into gold JSONL (detokenized text with character spans).

    -DOCSTART- lines separate documents, blank lines sentences. `run` reads the output directly.

    Example: vllm-extract gold from-conll test.conll --out gold.jsonl
    """
    import orjson

    from ..eval import read_conll, write_gold
    from ..run.paths import check_written_paths

    try:
        documents = read_conll(file, id_prefix=id_prefix, per_sentence=per_sentence)
        if str(out) == "-":
            for doc in documents:
                sys.stdout.write(orjson.dumps(doc.as_dict()).decode() + "\n")
        else:
            check_written_paths({"--out": out}, read={"FILE": file})
            if out.exists() and out.stat().st_size > 0 and not overwrite:
                raise OutputError(f"{out} already exists and would be overwritten", hint="pass --overwrite")
            try:
                write_gold(documents, out)
            except OSError as exc:
                raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    except VLLMClientError as exc:
        raise _fail(exc) from None
    entities = sum(len(d.entities) for d in documents)
    where = "stdout" if str(out) == "-" else str(out)
    err.print(f"{len(documents)} documents, {entities} entities -> {where}", highlight=False)
