"""The evaluation as text: two tables (per schema, per type) and notes, as rows or aligned text.

The CLI draws the same rows as rich tables on a terminal; everything else gets ``render_text``.
"""

from __future__ import annotations

from collections.abc import Mapping

from .scoring import SCHEMAS, EvalResult

__all__ = ["Table", "aligned", "notes", "render_text", "schema_table", "type_table"]

Table = tuple[list[str], list[list[str]]]  # (headers, rows); every cell a string


def schema_table(result: EvalResult) -> Table:
    """One row per schema: micro P/R/F1, the counts, macro F1 (macro P and R are in ``as_dict``)."""
    headers = ["schema", "P", "R", "F1", "COR", "INC", "PAR", "MIS", "SPU", "macro F1"]
    rows = []
    for name in SCHEMAS:
        s = result.micro[name]
        rows.append(
            [
                name,
                *(_f(x) for x in (s.precision, s.recall, s.f1)),
                *(str(n) for n in (s.correct, s.incorrect, s.partial, s.missed, s.spurious)),
                _f(result.macro[name].f1),
            ]
        )
    return headers, rows


def type_table(result: EvalResult) -> Table:
    """One row per scored type: gold support, predictions (of which ungrounded), strict P/R/F1, partial F1."""
    headers = ["type", "support", "predicted", "ungrounded", "P", "R", "F1", "partial F1"]
    rows = []
    for row in result.per_type:
        strict = row.scores["strict"]
        rows.append(
            [
                row.type,
                str(row.support),
                str(row.predicted),
                str(row.ungrounded),
                *(_f(x) for x in (strict.precision, strict.recall, strict.f1, row.scores["partial"].f1)),
            ]
        )
    return headers, rows


def notes(result: EvalResult) -> list[str]:
    """The headline line, then one line per thing that was not scored as usual."""
    d = result.documents
    lines = [
        f"strict micro F1 {result.strict_f1:.3f} · {d.gold} gold documents, {d.scored} scored · "
        f"{result.gold_entities} gold entities · {result.predicted_entities} predicted "
        f"({result.ungrounded} ungrounded, never matched)"
    ]
    if d.missing:
        lines.append(f"missing from PRED, all gold counted as missed ({len(d.missing)}): {', '.join(d.missing)}")
    if d.errors:
        lines.append(f"status error in PRED, all gold counted as missed ({len(d.errors)}): {', '.join(d.errors)}")
    if d.pred_without_gold:
        lines.append(f"PRED documents without gold, ignored: {len(d.pred_without_gold)}")
    if result.unmapped_gold_types:
        lines.append(f"unmapped gold types, not scored (use --map GOLD=OURS): {_counts(result.unmapped_gold_types)}")
    if result.unscored_predicted_types:
        lines.append(f"predicted types the gold never labels, not scored: {_counts(result.unscored_predicted_types)}")
    if result.type_map:
        lines.append("type map: " + ", ".join(f"{k}={v}" for k, v in result.type_map.items()))
    return lines


def render_text(result: EvalResult) -> str:
    """Plain aligned text: notes, the schema table, the per-type table; ends with a newline."""
    parts = [
        notes(result)[0],
        "",
        "micro and macro",
        aligned(schema_table(result)),
        "",
        "per type (strict unless named)",
        aligned(type_table(result)),
    ]
    extra = notes(result)[1:]
    if extra:
        parts += ["", *extra]
    return "\n".join(parts) + "\n"


def aligned(table: Table) -> str:
    """The table as lines of space-aligned columns (first column left, the others right)."""
    headers, rows = table
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join(line(r) for r in [headers, *rows])


def _f(value: float) -> str:
    return f"{value:.3f}"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())
