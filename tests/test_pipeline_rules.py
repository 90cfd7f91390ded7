"""Pipeline rules that need no engine (the engine tests are in test_pipeline.py)."""

from __future__ import annotations

import json

from vllm_extract.clients.followups import looping as _looping
from vllm_extract.output.records import text_sha256


def answer(*texts: str) -> str:
    return json.dumps({"entities": [{"type": "PERSON", "text": t} for t in texts]}, separators=(",", ":"))


def test_a_cut_answer_that_repeats_itself_is_looping() -> None:
    """The tiny model lists one span until max_tokens; retrying it with twice the budget buys
    twice the repeats, so such an answer is not retried (the share is measured in characters)."""
    assert _looping(answer("Acme", *["Nadia Farouk"] * 6)[:-3])  # cut mid-way, as at max_tokens
    assert not _looping(answer("Acme", "Beta LLC", "Nadia Farouk", "Acme"))  # one repeat in four
    assert not _looping("")


def test_text_hash_is_of_the_utf8_text() -> None:
    import hashlib

    assert text_sha256("a") == "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
    assert text_sha256("José") == hashlib.sha256("José".encode()).hexdigest()
    assert len(text_sha256("memo_\udcff")) == 64  # a lone surrogate (non-UTF-8 input) still hashes
