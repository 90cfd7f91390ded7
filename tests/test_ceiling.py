"""The pipeline's ceiling guard (bench row 13 in small): a scripted server that answers every chunk
with its gold entities (bench/_gold_server.py) must get strict micro F1 >= 0.99 from a real run
over gold documents cut into several chunks, and a server that drops answers must not."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vllm_extract import ExtractionConfig, RunOptions, Settings, VLLMConfig, run_job
from vllm_extract.eval import evaluate, load_gold, load_predictions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _gold_server import GoldServer, chatml_messages  # noqa: E402

GOLD = ROOT / "examples" / "gold" / "gold.jsonl"
# Two documents of several 256-token chunks each, each with an entity that crosses a chunk edge.
DOCUMENTS = ("opinion-district-retaliation", "news-appeals-appointment")


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from vllm_extract.engine.models import prepare_tiny_model
    from vllm_extract.extract.tokens import HFTokenizer, load_tokenizer

    tok = load_tokenizer(str(prepare_tiny_model().path))
    assert isinstance(tok, HFTokenizer)
    return tok.raw


@pytest.fixture(scope="module")
def gold_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = [line for line in GOLD.read_text(encoding="utf-8").splitlines() if json.loads(line)["id"] in DOCUMENTS]
    assert len(lines) == len(DOCUMENTS)
    path = tmp_path_factory.mktemp("ceiling") / "gold.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def server(gold_file: Path, tokenizer: Any) -> Iterator[GoldServer]:
    with GoldServer(gold_file, tokenizer) as running:
        yield running


def _run(gold_file: Path, out: Path, url: str) -> tuple[float, int]:
    """A run over ``gold_file`` against ``url`` (grounded decoding, 256-token chunks): strict micro
    F1 and the number of chunks."""
    settings = Settings(VLLMConfig(model="tiny", base_url=url), ExtractionConfig(chunk_tokens=256))
    result = asyncio.run(run_job([str(gold_file)], out, settings, RunOptions(backend="http", overwrite=True)))
    scored = evaluate(load_gold(gold_file), load_predictions(out), expected_types=settings.extraction.type_names)
    return scored.micro["strict"].f1, result.summary.chunks


def test_exact_gold_answers_keep_strict_f1_at_least_099(server: GoldServer, gold_file: Path, tmp_path: Path) -> None:
    f1, chunks = _run(gold_file, tmp_path / "out.jsonl", server.url)
    assert chunks >= 2 * len(DOCUMENTS)  # chunk edges are crossed
    # The local tokenizer makes the client send token ids, which the server decoded and located.
    assert server.requests["completions"] == chunks and server.unlocated == 0
    assert server.constrained["grammar"] == chunks  # grounded decoding was asked for, and ignored
    print(f"strict micro F1 {f1:.4f} over {chunks} chunks")
    assert f1 >= 0.99


def test_guard_fails_when_answers_are_dropped(server: GoldServer, gold_file: Path, tmp_path: Path) -> None:
    server.variant = "drop"  # every second gold entity of each chunk left out
    f1, _ = _run(gold_file, tmp_path / "out.jsonl", server.url)
    print(f"strict micro F1 {f1:.4f} with answers dropped")
    assert f1 < 0.99


def test_server_answers_the_document_message_and_the_types_a_later_question_names(
    server: GoldServer, gold_file: Path
) -> None:
    text = json.loads(gold_file.read_text(encoding="utf-8").splitlines()[0])["text"]
    chunk = text[:600]
    messages = [
        {"role": "system", "content": "instructions"},
        {"role": "user", "content": "Document:\n" + chunk},
    ]
    every = json.loads(server.answer(messages))["entities"]
    assert {e["type"] for e in every} >= {"COURT", "PARTY", "DATE"}
    asked = [*messages, {"role": "assistant", "content": "{}"}, {"role": "user", "content": "Now list DATE only."}]
    dates = json.loads(server.answer(asked))["entities"]
    assert dates == [e for e in every if e["type"] == "DATE"] and dates
    unnamed = [*messages, {"role": "user", "content": "Anything else?"}]
    assert json.loads(server.answer(unnamed))["entities"] == every
    assert json.loads(server.answer([{"role": "user", "content": "Document:\nnot in the gold set"}])) == {
        "entities": []
    }
    assert server.unlocated == 1


def test_chatml_prompt_is_read_back_as_messages() -> None:
    prompt = "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nDocument:\nA\nB<|im_end|>\n<|im_start|>assistant\n"
    assert chatml_messages(prompt) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "Document:\nA\nB"},
    ]
