"""``vllm-extract merge``: join shard outputs into one output in input order, naming what is missing.

``merge_shards`` checks the paths (``paths``), then runs ``output.merge.merge_shard_files`` (every
check of the shards, and the writing) with missing documents named by id and ``source:line``: the
inputs the shards read, as their manifests name them, are read again here (the output side reads
no inputs), and only when they still hash to the shards' digest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..exceptions import OutputError
from ..output.merge import MergeResult, merge_shard_files
from ..output.shards import ShardSpec
from ..readers import BadInput, Document, iter_documents
from .paths import check_written_paths
from .shards import ShardFilter

__all__ = ["merge_shards", "name_missing"]

logger = logging.getLogger(__name__)


def merge_shards(paths: Sequence[Path | str], out: Path | str, *, overwrite: bool = False) -> MergeResult:
    """Check shard outputs and write them to ``out`` in input order (``output.merge``); missing
    documents are named by id when the inputs can be read here.

    Raises ``MergeError`` listing every problem found, before writing anything;
    ``OutputError`` (exit 2) when an input file is missing, ``out`` is one of the inputs, or ``out``
    exists and ``overwrite`` is false; ``LockHeldError`` (exit 4) when another run writes ``out``.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise OutputError("no shard outputs given", hint="e.g. vllm-extract merge out-*.jsonl --out out.jsonl")
    for path in files:
        if not path.is_file():
            raise OutputError(f"shard output {path} does not exist or is not a file")
    check_written_paths({"--out": Path(out)}, read={f"the shard output {path}": path for path in files})
    return merge_shard_files(files, out, overwrite=overwrite, name_missing=name_missing)


def name_missing(manifests: list[dict[str, Any]], missing: set[int]) -> dict[int, str] | None:
    """Names (``'id' (source:line)``) of missing positions, read from the inputs the shards ran on.

    None when those inputs cannot be read here (another machine's paths, stdin) or have changed.
    """
    first = manifests[0]
    inputs = first.get("inputs") or []
    if not inputs or "-" in inputs or not all(os.path.exists(p) for p in inputs):
        return None
    try:
        items = iter_documents(
            inputs,
            id_field=first.get("id_field", "id"),
            text_field=first.get("text_field", "text"),
            globs=tuple(first.get("globs") or ()),
        )
        counter = ShardFilter(items, ShardSpec(0, 1))
        names: dict[int, str] = {}
        for item in counter:
            if isinstance(item, Document | BadInput) and item.index in missing:
                where = f"{item.source}:{item.line}" if item.line is not None else item.source
                names[item.index] = f"{item.id!r} ({where})"
    except Exception as exc:  # noqa: BLE001 - naming is a courtesy; positions are always given
        logger.warning("could not read the inputs to name missing documents: %s", exc)
        return None
    if counter.digest != first.get("inputs_sha256"):
        logger.warning("the inputs changed since the shards ran: missing documents are named by position only")
        return None
    return names
