"""Precision, recall and F1 of predicted spans against gold spans (SemEval-2013 task 9.1 schemas).

Every predicted entity is compared with the gold entities of its document, one to one (a gold
entity is matched by at most one prediction; a second identical prediction is spurious):

    schema    correct (COR) when                     incorrect (INC) when
    strict    same span and same type                overlapping span, or same span with another type
    exact     same span, any type                    overlapping span only
    partial   same span, any type                    (overlap, any type, is PARTIAL: counts half)
    type      overlapping span and same type         overlapping span with another type

A prediction that overlaps no gold entity is spurious (SPU); a gold entity no prediction matched
is missed (MIS). With POS = COR+INC+PAR+MIS (the gold entities) and ACT = COR+INC+PAR+SPU (the
predictions): precision = (COR + 0.5*PAR) / ACT, recall = (COR + 0.5*PAR) / POS, F1 their harmonic
mean (PAR is non-zero only for ``partial``). Spans overlap when they share a character: [0, 5)
and [5, 10) do not.

The matching itself is nervaluate's (``nervaluate.Evaluator``). Around it we:

* convert our exclusive ends to its inclusive ends (``end - 1``);
* order each document's predictions so that those matching a gold span exactly (same type first)
  come first, so a near miss earlier in the list cannot take the gold entity from an exact match;
* count predictions with ``grounded: false`` (no offsets) as spurious: they never match;
* compute P/R/F1 from the counts ourselves (one formula for micro, per type and macro).

Micro scores pool every entity; per-type rows score each type on its own (a PERSON predicted
where gold says PARTY is a spurious PERSON and a missed PARTY); macro scores are the unweighted
means of the per-type precision, recall and F1.

Which types are scored: the gold types (after the type map), except gold types that are neither
predicted anywhere nor among the expected types (the types the run was asked for, by default
vllm-extract's default types): those are reported as unmapped and left out. Predictions of types
the gold never labels are reported as unscored and left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .gold import GoldDocument
from .predictions import PredDocument, PredEntity

__all__ = ["SCHEMAS", "Averages", "DocumentCounts", "EvalResult", "Score", "TypeResult", "evaluate"]

SCHEMAS: tuple[str, ...] = ("strict", "exact", "partial", "type")
_NERVALUATE_NAME = {"strict": "strict", "exact": "exact", "partial": "partial", "type": "ent_type"}


@dataclass(frozen=True)
class Score:
    """Counts and scores of one schema. Scores are fractions in [0, 1]; 0 when undefined."""

    correct: int = 0
    incorrect: int = 0
    partial: int = 0
    missed: int = 0
    spurious: int = 0

    @property
    def possible(self) -> int:
        """POS: gold entities (COR + INC + PAR + MIS)."""
        return self.correct + self.incorrect + self.partial + self.missed

    @property
    def actual(self) -> int:
        """ACT: predicted entities (COR + INC + PAR + SPU)."""
        return self.correct + self.incorrect + self.partial + self.spurious

    @property
    def precision(self) -> float:
        """(COR + 0.5 PAR) / ACT, 0.0 when nothing was predicted."""
        return (self.correct + 0.5 * self.partial) / self.actual if self.actual else 0.0

    @property
    def recall(self) -> float:
        """(COR + 0.5 PAR) / POS, 0.0 when there is no gold entity."""
        return (self.correct + 0.5 * self.partial) / self.possible if self.possible else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall, 0.0 when both are 0."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def plus(self, *, spurious: int = 0) -> Score:
        """A copy with ``spurious`` more spurious predictions."""
        return Score(self.correct, self.incorrect, self.partial, self.missed, self.spurious + spurious)

    def as_dict(self) -> dict[str, Any]:
        """Counts, POS/ACT and the three scores (rounded to 6 places)."""
        return {
            "correct": self.correct,
            "incorrect": self.incorrect,
            "partial": self.partial,
            "missed": self.missed,
            "spurious": self.spurious,
            "possible": self.possible,
            "actual": self.actual,
            "precision": round(self.precision, 6),
            "recall": round(self.recall, 6),
            "f1": round(self.f1, 6),
        }


@dataclass(frozen=True)
class Averages:
    """Macro averages: unweighted means over the scored types (fractions in [0, 1])."""

    precision: float = 0.0
    recall: float = 0.0
    f1: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The three means, rounded to 6 places."""
        return {"precision": round(self.precision, 6), "recall": round(self.recall, 6), "f1": round(self.f1, 6)}


@dataclass(frozen=True)
class TypeResult:
    """One row of the per-type table: gold support, predictions of the type, a Score per schema."""

    type: str
    support: int
    predicted: int
    ungrounded: int
    scores: Mapping[str, Score]

    def as_dict(self) -> dict[str, Any]:
        """JSON shape: ``{type, support, predicted, ungrounded, scores: {strict: {...}, exact: ..., ...}}``."""
        return {
            "type": self.type,
            "support": self.support,
            "predicted": self.predicted,
            "ungrounded": self.ungrounded,
            "scores": {name: self.scores[name].as_dict() for name in SCHEMAS},
        }


@dataclass(frozen=True)
class DocumentCounts:
    """Which documents were scored, and which were not.

    ``gold``: documents in the gold file. ``scored``: gold documents with an ``ok`` PRED record.
    ``missing``: gold ids absent from PRED; ``errors``: gold ids whose PRED record has
    ``status: error`` (both count every gold entity as missed). ``pred_without_gold``: PRED ids
    with no gold document (ignored).
    """

    gold: int
    predicted: int
    scored: int
    missing: tuple[str, ...]
    errors: tuple[str, ...]
    pred_without_gold: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON shape, id lists in gold (or PRED) order."""
        return {
            "gold": self.gold,
            "predicted": self.predicted,
            "scored": self.scored,
            "missing": list(self.missing),
            "errors": list(self.errors),
            "pred_without_gold": len(self.pred_without_gold),
            "pred_without_gold_ids": list(self.pred_without_gold),
        }


@dataclass(frozen=True)
class EvalResult:
    """The whole evaluation. ``micro``/``macro`` are keyed by schema name (``SCHEMAS``)."""

    micro: Mapping[str, Score]
    macro: Mapping[str, Averages]
    per_type: tuple[TypeResult, ...]
    documents: DocumentCounts
    gold_entities: int
    predicted_entities: int
    ungrounded: int
    unmapped_gold_types: Mapping[str, int] = field(default_factory=dict)
    unscored_predicted_types: Mapping[str, int] = field(default_factory=dict)
    type_map: Mapping[str, str] = field(default_factory=dict)

    @property
    def strict_f1(self) -> float:
        """Strict micro F1, the number ``--min-f1`` gates on."""
        return self.micro["strict"].f1

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``--json`` output)."""
        return {
            "micro": {name: self.micro[name].as_dict() for name in SCHEMAS},
            "macro": {name: self.macro[name].as_dict() for name in SCHEMAS},
            "per_type": [row.as_dict() for row in self.per_type],
            "documents": self.documents.as_dict(),
            "entities": {
                "gold": self.gold_entities,
                "predicted": self.predicted_entities,
                "ungrounded": self.ungrounded,
            },
            "unmapped_gold_types": dict(self.unmapped_gold_types),
            "unscored_predicted_types": dict(self.unscored_predicted_types),
            "type_map": dict(self.type_map),
        }


def evaluate(
    gold: Mapping[str, GoldDocument],
    predictions: Mapping[str, PredDocument],
    *,
    type_map: Mapping[str, str] | None = None,
    expected_types: Iterable[str] | None = None,
) -> EvalResult:
    """Score ``predictions`` against ``gold`` (both keyed by document id).

    ``type_map`` renames gold types (``{"PER": "PERSON"}``) before anything else.
    ``expected_types``: the types the run was asked for (default: vllm-extract's default entity
    types); a gold type that is neither among them nor predicted anywhere is reported in
    ``unmapped_gold_types`` and not scored. Raises nothing for well-formed inputs.
    """
    type_map = dict(type_map or {})
    if expected_types is None:
        from ..config import DEFAULT_ENTITY_TYPES

        expected = {t.name for t in DEFAULT_ENTITY_TYPES}
    else:
        expected = set(expected_types)

    # Documents: pair gold with PRED, in gold order.
    missing: list[str] = []
    errors: list[str] = []
    pairs: list[tuple[list[tuple[str, int, int]], list[PredEntity]]] = []
    for doc_id, gdoc in gold.items():
        spans = [(type_map.get(s.type, s.type), s.start, s.end) for s in gdoc.entities]
        pdoc = predictions.get(doc_id)
        if pdoc is None:
            missing.append(doc_id)
            pairs.append((spans, []))
        elif pdoc.status != "ok":
            errors.append(doc_id)
            pairs.append((spans, []))
        else:
            pairs.append((spans, list(pdoc.entities)))
    pred_without_gold = tuple(i for i in predictions if i not in gold)

    gold_type_counts = Counter(t for spans, _ in pairs for t, _, _ in spans)
    predicted_types = {e.type for _, preds in pairs for e in preds}
    unmapped = {t: n for t, n in gold_type_counts.items() if t not in predicted_types and t not in expected}
    scored = sorted(t for t in gold_type_counts if t not in unmapped)
    scored_set = set(scored)
    unscored_pred = Counter(e.type for _, preds in pairs for e in preds if e.type not in scored_set)

    true_docs: list[list[dict[str, Any]]] = []
    pred_docs: list[list[dict[str, Any]]] = []
    ungrounded_by_type: Counter[str] = Counter()
    predicted_by_type: Counter[str] = Counter()
    for spans, preds in pairs:
        kept = [(t, s, e) for t, s, e in spans if t in scored_set]
        true_docs.append([{"label": t, "start": s, "end": e - 1} for t, s, e in kept])
        grounded = [p for p in preds if p.type in scored_set and p.grounded]
        for p in preds:
            if p.type in scored_set:
                predicted_by_type[p.type] += 1
                if not p.grounded:
                    ungrounded_by_type[p.type] += 1
        pred_docs.append([{"label": p.type, "start": p.start, "end": p.end - 1} for p in _exact_first(grounded, kept)])

    overall, by_type = _match(true_docs, pred_docs, scored)
    ungrounded = sum(ungrounded_by_type.values())
    micro = {name: overall[name].plus(spurious=ungrounded) for name in SCHEMAS}
    rows = tuple(
        TypeResult(
            type=t,
            support=gold_type_counts[t],
            predicted=predicted_by_type[t],
            ungrounded=ungrounded_by_type[t],
            scores={name: by_type[t][name].plus(spurious=ungrounded_by_type[t]) for name in SCHEMAS},
        )
        for t in scored
    )
    macro = {name: _macro([row.scores[name] for row in rows]) for name in SCHEMAS}
    return EvalResult(
        micro=micro,
        macro=macro,
        per_type=rows,
        documents=DocumentCounts(
            gold=len(gold),
            predicted=len(predictions),
            scored=len(gold) - len(missing) - len(errors),
            missing=tuple(missing),
            errors=tuple(errors),
            pred_without_gold=pred_without_gold,
        ),
        gold_entities=sum(gold_type_counts[t] for t in scored),
        predicted_entities=sum(predicted_by_type.values()),
        ungrounded=ungrounded,
        unmapped_gold_types=dict(sorted(unmapped.items())),
        unscored_predicted_types=dict(sorted(unscored_pred.items())),
        type_map=type_map,
    )


def _exact_first(preds: list[PredEntity], gold: list[tuple[str, int, int]]) -> list[PredEntity]:
    """Predictions matching a gold span with its type first, then same span any type, then the rest."""
    typed = set(gold)
    spans = {(s, e) for _, s, e in gold}

    def rank(p: PredEntity) -> int:
        if (p.type, p.start, p.end) in typed:
            return 0
        return 1 if (p.start, p.end) in spans else 2

    return sorted(preds, key=rank)  # stable: keeps PRED order within a rank


def _match(
    true_docs: list[list[dict[str, Any]]], pred_docs: list[list[dict[str, Any]]], tags: list[str]
) -> tuple[dict[str, Score], dict[str, dict[str, Score]]]:
    """nervaluate's counts: overall and per type, per schema (our names)."""
    empty = {name: Score() for name in SCHEMAS}
    by_type = {t: dict(empty) for t in tags}
    if not tags or (not any(true_docs) and not any(pred_docs)):
        return empty, by_type
    from nervaluate import Evaluator

    results = Evaluator(true_docs, pred_docs, tags=tags, loader="dict").evaluate()
    overall = {name: _score(results["overall"].get(_NERVALUATE_NAME[name])) for name in SCHEMAS}
    for t, per_schema in results["entities"].items():
        by_type[t] = {name: _score(per_schema.get(_NERVALUATE_NAME[name])) for name in SCHEMAS}
    return overall, by_type


def _score(result: Any) -> Score:
    if result is None:
        return Score()
    return Score(result.correct, result.incorrect, result.partial, result.missed, result.spurious)


def _macro(scores: list[Score]) -> Averages:
    if not scores:
        return Averages()
    n = len(scores)
    return Averages(
        precision=sum(s.precision for s in scores) / n,
        recall=sum(s.recall for s in scores) / n,
        f1=sum(s.f1 for s in scores) / n,
    )
