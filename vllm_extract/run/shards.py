"""Shards, the input side: every shard reads the whole input and keeps its own documents.

Every shard reads the whole input (it must, to count positions), so every shard sees every item:
``ShardFilter`` keeps the items of its shard (``output.shards.ShardSpec``: by a hash of the id)
and, on the way, counts every item (``inputs_total``) and hashes their identities
(``inputs_sha256``). ``shard_manifest`` turns that into the manifest a finished shard writes
beside its output (``output.shards.write_manifest``), which ``merge`` checks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

from .._version import __version__
from ..config import Settings
from ..output.records import text_sha256
from ..output.shards import MANIFEST_FORMAT, ShardSpec
from ..readers import BadInput, Document, InputItem, SkippedFile
from .plan import RunPlan

__all__ = ["ShardFilter", "shard_manifest"]


def _identity(item: Document | BadInput) -> bytes:
    """What makes an input item the same on every machine: position, id, source, line, text hash."""
    text = text_sha256(item.text) if isinstance(item, Document) else None
    return orjson.dumps([item.index, item.id, item.source, item.line, text])


class ShardFilter:
    """Iterates the items of one shard and, on the way, counts and hashes every input item.

    ``total`` (items read, documents and bad inputs, i.e. the input's length) and ``digest`` (hex
    SHA-256 over every item's identity, in order) are final once the iteration is exhausted
    (``exhausted`` says so). Skipped files (outside the globs) pass through: every shard lists them.
    """

    def __init__(self, items: Iterable[InputItem], shard: ShardSpec) -> None:
        self._items = items
        self.shard = shard
        self.total = 0
        self.kept = 0
        self.exhausted = False
        self._hash = hashlib.sha256()

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    def __iter__(self) -> Iterator[InputItem]:
        for item in self._items:
            if isinstance(item, SkippedFile):
                yield item
                continue
            self.total += 1
            self._hash.update(_identity(item))
            if self.shard.owns(item.id):
                self.kept += 1
                yield item
        self.exhausted = True


def shard_manifest(sharded: ShardFilter, plan: RunPlan, settings: Settings, inputs: Sequence[str]) -> dict[str, Any]:
    """What ``merge`` needs from a finished shard (see ``output.shards``): which shard, how many
    inputs in all and their digest, how many records this shard wrote, the run's fingerprint, and
    how the inputs were read (to name missing documents by id when they are readable at merge time)."""
    ext = settings.extraction
    return {
        "format": MANIFEST_FORMAT,
        "shard": sharded.shard.as_dict(),
        "inputs_total": sharded.total,
        "inputs_sha256": sharded.digest,
        "records": sharded.kept,
        "fingerprint": plan.fingerprint,
        "inputs": list(inputs),
        "id_field": ext.id_field,
        "text_field": ext.text_field,
        "globs": list(ext.globs),
        "vllm_extract_version": __version__,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
