"""Chunking with the real tiny-model tokenizer: spans, coverage, overlap, budgets, boundaries."""

from __future__ import annotations

import itertools
import random

import pytest

from vllm_extract.extract.chunking import Chunk, chunk_document, split_span
from vllm_extract.extract.tokens import HFTokenizer, Tokenizer, load_tokenizer

WORDS = (
    "agreement",
    "buyer",
    "seller",
    "court",
    "judge",
    "plaintiff",
    "defendant",
    "statute",
    "payment",
    "clause",
    "section",
    "delivery",
    "warranty",
    "breach",
    "damages",
    "notice",
    "party",
    "contract",
    "dispute",
    "arbitration",
    "tribunal",
    "Acme",
    "Corporation",
    "Jones",
    "Smith",
    "London",
    "Delaware",
    "million",
    "dollars",
    "January",
    "March",
    "hereby",
    "whereas",
)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    from vllm_extract.engine.models import prepare_tiny_model

    tok = load_tokenizer(str(prepare_tiny_model().path))
    assert isinstance(tok, HFTokenizer) and tok.exact
    return tok


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(5, 25))]
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice([".", ".", ".", "!", "?", ";"])


def _long_text(rng: random.Random, target_chars: int) -> str:
    paragraphs: list[str] = []
    size = 0
    while size < target_chars:
        para = " ".join(_sentence(rng) for _ in range(rng.randint(1, 8)))
        paragraphs.append(para)
        size += len(para) + 2
    return "\n\n".join(paragraphs)


@pytest.fixture(scope="module")
def long_text(tokenizer: Tokenizer) -> str:
    text = _long_text(random.Random(1234), 140_000)
    n = len(tokenizer.offsets(text))
    assert 18_000 <= n <= 30_000, n
    return text


def _check_spans(chunks: list[Chunk], text: str, doc_id: str = "d") -> None:
    assert chunks, "no chunks"
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text)
    for i, chunk in enumerate(chunks):
        assert chunk.doc_id == doc_id
        assert chunk.index == i
        assert 0 <= chunk.start < chunk.end <= len(text)
        assert chunk.text == text[chunk.start : chunk.end]
    for prev, nxt in itertools.pairwise(chunks):
        assert nxt.start <= prev.end, "gap between chunks"
        assert nxt.start > prev.start, "no progress"
        assert nxt.end > prev.end


def _check_budget(chunks: list[Chunk], tokenizer: Tokenizer, max_tokens: int) -> None:
    for chunk in chunks:
        assert chunk.tokens <= max_tokens
        assert len(tokenizer.encode(chunk.text)) <= max_tokens + 2, chunk.index


def test_short_text_is_one_chunk(tokenizer: Tokenizer) -> None:
    text = "Acme Corp. sued Jones in London on 3 March 2020."
    n = len(tokenizer.offsets(text))
    (chunk,) = chunk_document("doc", text, tokenizer, max_tokens=1000)
    assert chunk == Chunk("doc", 0, 0, len(text), text, n)
    assert 5 < n < 30


def test_text_exactly_at_budget_is_one_chunk(tokenizer: Tokenizer) -> None:
    text = " ".join(["word"] * 100)
    n = len(tokenizer.offsets(text))
    assert len(chunk_document("d", text, tokenizer, max_tokens=n)) == 1
    assert len(chunk_document("d", text, tokenizer, max_tokens=n - 1)) == 2


def test_long_text_chunks(tokenizer: Tokenizer, long_text: str) -> None:
    max_tokens = 1000
    chunks = chunk_document("d", long_text, tokenizer, max_tokens=max_tokens, overlap=0.1)
    total = len(tokenizer.offsets(long_text))
    # About total / (max * 0.9) chunks: not many more than needed.
    assert total / max_tokens < len(chunks) <= total / (max_tokens * 0.7) + 1
    _check_spans(chunks, long_text)
    _check_budget(chunks, tokenizer, max_tokens)
    # Consecutive chunks overlap, by something like 10% of a chunk (not the whole chunk).
    for prev, nxt in itertools.pairwise(chunks):
        shared = prev.end - nxt.start
        assert shared > 0, "chunks do not overlap"
        assert shared < (prev.end - prev.start) * 0.3
    # Chunks are not slivers: all but the last use most of the budget.
    assert all(c.tokens >= max_tokens * 0.6 for c in chunks[:-1])
    # Cuts land on boundaries: every cut follows whitespace, most follow a paragraph or sentence end.
    ends = [c.end for c in chunks[:-1]]
    assert all(long_text[e - 1].isspace() for e in ends)
    sentence_ends = sum(long_text[:e].rstrip().endswith((".", "!", "?", ";")) for e in ends)
    assert sentence_ends >= 0.9 * len(ends)
    paragraph_ends = sum(long_text[:e].endswith("\n") for e in ends)
    assert paragraph_ends >= 0.5 * len(ends)
    # Overlapping chunks start at a sentence start where possible.
    starts = [c.start for c in chunks[1:]]
    assert sum(long_text[:s].rstrip().endswith((".", "!", "?", ";")) for s in starts) >= 0.9 * len(starts)


def test_no_overlap(tokenizer: Tokenizer, long_text: str) -> None:
    chunks = chunk_document("d", long_text, tokenizer, max_tokens=1500, overlap=0.0)
    _check_spans(chunks, long_text)
    _check_budget(chunks, tokenizer, 1500)
    for prev, nxt in itertools.pairwise(chunks):
        assert nxt.start == prev.end


def test_chunk_token_counts_add_up_without_overlap(tokenizer: Tokenizer, long_text: str) -> None:
    chunks = chunk_document("d", long_text, tokenizer, max_tokens=2000, overlap=0.0)
    total = len(tokenizer.offsets(long_text))
    assert abs(sum(c.tokens for c in chunks) - total) <= len(chunks)


def test_cjk_without_spaces(tokenizer: Tokenizer) -> None:
    rng = random.Random(7)
    sentences = ["".join(rng.choice("東京大阪株式会社契約書裁判所判決原告被告") for _ in range(30)) for _ in range(400)]
    text = "。".join(sentences) + "。"
    chunks = chunk_document("cjk", text, tokenizer, max_tokens=500, overlap=0.1)
    assert len(chunks) > 3
    _check_spans(chunks, text, "cjk")
    _check_budget(chunks, tokenizer, 500)
    # Cuts land after a CJK full stop (a sentence boundary), though no space follows it.
    ends = [c.end for c in chunks[:-1]]
    assert sum(text[e - 1] == "。" for e in ends) >= 0.9 * len(ends)


def test_emoji_and_accents(tokenizer: Tokenizer) -> None:
    rng = random.Random(11)
    pieces = ["José Müller-Łukasiewicz 😀 signed.", "Ünïcödé 👩‍⚖️ court 🎉🎉!", "Zoë paid €5,000 💶."]
    text = " ".join(rng.choice(pieces) for _ in range(1500))
    chunks = chunk_document("e", text, tokenizer, max_tokens=700, overlap=0.15)
    assert len(chunks) > 5
    _check_spans(chunks, text, "e")
    _check_budget(chunks, tokenizer, 700)


def test_one_huge_word_without_whitespace(tokenizer: Tokenizer) -> None:
    rng = random.Random(3)
    text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(50_000))
    chunks = chunk_document("w", text, tokenizer, max_tokens=1000, overlap=0.1)
    assert len(chunks) > 10
    _check_spans(chunks, text, "w")
    _check_budget(chunks, tokenizer, 1000)
    for prev, nxt in itertools.pairwise(chunks):
        assert prev.end - nxt.start > 0


def test_split_span(tokenizer: Tokenizer, long_text: str) -> None:
    chunks = chunk_document("d", long_text, tokenizer, max_tokens=1000, overlap=0.1)
    chunk = chunks[3]
    left, right = split_span(chunk)
    assert (left.start, left.end, right.start, right.end) == (chunk.start, left.end, left.end, chunk.end)
    assert chunk.start < left.end < chunk.end
    assert left.text == long_text[left.start : left.end]
    assert right.text == long_text[right.start : right.end]
    assert left.text + right.text == chunk.text
    assert left.tokens + right.tokens == chunk.tokens
    assert left.doc_id == right.doc_id == "d"
    # Cut near the middle, on a boundary.
    mid = chunk.start + (chunk.end - chunk.start) // 2
    assert chunk.start + (chunk.end - chunk.start) // 4 <= left.end <= mid
    assert long_text[left.end - 1].isspace()


def test_split_span_without_boundaries() -> None:
    text = "x" * 101
    chunk = Chunk("d", 2, 50, 151, text, 40)
    left, right = split_span(chunk)
    assert (left.start, left.end, right.start, right.end) == (50, 100, 100, 151)
    assert left.text + right.text == text
    assert (left.tokens, right.tokens) == (20, 20)
    assert left.index == right.index == 2
