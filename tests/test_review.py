"""`vllm-extract review`: the page's data, the command, and the page itself in a real headless Chromium.

The browser tests drive Debian's Chromium (``scripts/system-deps`` installs it) through Playwright,
one browser for the whole module. Where Chromium or Playwright is missing they skip, saying so,
except under CI (``CI`` set), where they fail: CI installs the browser and must run them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from vllm_extract.cli import app
from vllm_extract.eval.gold import GoldDocument, GoldSpan
from vllm_extract.exceptions import InputError, OutputError
from vllm_extract.review import InputTexts, build_review_data, read_output_records, render_page, write_review
from vllm_extract.review.data import FALSE_POSITIVE, MATCH, MISSED, NO_GOLD

try:
    from playwright.sync_api import expect
except ImportError:  # the browser tests skip, or fail under CI, in the `browser` fixture
    expect = None

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
runner = CliRunner()

HOSTILE = (
    "Ann Lee wrote <script>window.pwned = 1; document.title = 'pwned';</script> and "
    '<img src=x onerror="window.pwned = 2"> then &amp; &lt;b&gt; </textarea></script><!-- '
    "before Bob Ray signed."
)


# ---- building records by hand ---------------------------------------------------------------


def spans(text: str, wanted: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Entities with real offsets: each (type, surface) at its next occurrence in ``text``."""
    after: dict[str, int] = {}
    out = []
    for etype, surface in wanted:
        start = text.index(surface, after.get(surface, 0))
        after[surface] = start + 1
        out.append({"type": etype, "text": surface, "start": start, "end": start + len(surface)})
    return out


def record(doc_id: str, entities: list[dict[str, Any]], index: int = 0, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": doc_id, "index": index, "source": "docs.jsonl", "status": "ok", "entities": entities}
    return base | extra


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


EXAMPLE_ENTITIES: dict[str, list[tuple[str, str]]] = {
    "court-opinion": [
        ("COURT", "UNITED STATES COURT OF APPEALS FOR THE NINTH CIRCUIT"),
        ("PARTY", "MERIDIAN ORCHARD HOLDINGS, LLC"),
        ("PARTY", "TERESA VALDOVINOS"),
        ("PARTY", "CASCADE RIDGE LOGISTICS, INC."),
        ("PARTY", "DONALD P. HARROWGATE"),
        ("COURT", "United States District Court for the Northern District of California"),
        ("PERSON", "Rosalind M. Haverford"),
        ("DATE", "October 12, 2023"),
        ("LOCATION", "San Francisco"),
        ("DATE", "March 4, 2024"),
        ("JUDGE", "KIM"),
        ("JUDGE", "ORTEGA"),
        ("JUDGE", "WALSH"),
        ("JUDGE", "ORTEGA"),
        ("JUDGE", "ORTEGA"),
        ("PARTY", "Meridian Orchard Holdings, LLC"),
        ("PARTY", "Teresa Valdovinos"),
        ("PARTY", "Cascade Ridge Logistics, Inc."),
        ("PARTY", "Donald P. Harrowgate"),
        ("DATE", "June 18, 2020"),
        ("STATUTE", "28 U.S.C. § 1291"),
        ("LOCATION", "Fresno"),
        ("LOCATION", "Tacoma, Washington"),
        ("LOCATION", "Portland, Oregon"),
        ("LOCATION", "Boise, Idaho"),
        ("MONEY", "$2,316,400"),
        ("MONEY", "$1,150,000"),
        ("DATE", "June 18, 2020"),
        ("STATUTE", "California Civil Code section 1542"),
        ("STATUTE", "Cal. Civ. Code § 1542"),
        ("LOCATION", "Redding"),
        ("DATE", "September 9, 2020"),
        ("DATE", "June 11, 2021"),
        ("STATUTE", "42 U.S.C. § 1983"),
        ("CASE_CITATION", "Harlan v. Dunmore Corp."),
        ("CASE_CITATION", "Pellegrini Farms, Inc. v. Stanbury Mutual Ins. Co."),
        ("CASE_CITATION", "Whitcombe v. Alder Valley Packing Co."),
        ("MONEY", "$1,150,000"),
        ("CASE_CITATION", "Okafor v. Lindqvist Marine Servs."),
        ("DATE", "September 9, 2020"),
        ("CASE_CITATION", "Ruiz-Castellanos v. Brightwater Title Co."),
        ("STATUTE", "Cal. Civ. Code § 1668"),
        ("STATUTE", "42 U.S.C. § 1983"),
    ],
    "supply-agreement": [
        ("PARTY", "Halvorsen Polymer Works, Inc."),
        ("DATE", "April 1, 2024"),
        ("LOCATION", "4410 Ridgeline Parkway, Suite 300, Akron, Ohio 44308, United States"),
        ("PARTY", "Brightwell Medical Devices LLC"),
        ("LOCATION", "1275 Lakeshore Commons Drive, Eden Prairie, Minnesota 55344, United States"),
        ("DATE", "March 31, 2027"),
        ("MONEY", "USD 1,250,000.00"),
        ("MONEY", "USD 625,000.00"),
        ("DATE", "May 15, 2024"),
        ("MONEY", "$45,000"),
        ("MONEY", "$3,600,000"),
        ("LOCATION", "State of New York"),
        ("LOCATION", "New York County, New York"),
        ("PERSON", "Priya Ramaswamy"),
        ("PERSON", "Gregory T. Halvorsen"),
        ("DATE", "March 27, 2024"),
        ("PERSON", "Maribel Achterberg-Osei"),
        ("DATE", "March 28, 2024"),
    ],
    "notice-accents": [
        ("DATE", "3 février 2025"),
        ("DATE", "February 3, 2025"),
        ("COURT", "Tribunal de commerce de Paris"),
        ("DATE", "28 janvier 2025"),
        ("ORGANIZATION", "Société Générale de Réassurance Côte-d'Azur S.A."),
        ("ORGANIZATION", "青葉海上火災保険株式会社"),
        ("MONEY", "€2.400.000"),
        ("COURT", "Paris Commercial Court"),
        ("DATE", "January 28, 2025"),
        ("ORGANIZATION", "Société Générale de Réassurance Côte-d'Azur S.A."),
        ("ORGANIZATION", "青葉海上火災保険株式会社"),
        ("ORGANIZATION", "Aoba Marine & Fire Insurance Co., Ltd."),
        ("MONEY", "€2.400.000"),
        ("PERSON", "José Müller-Łukasiewicz"),
        ("LOCATION", "14 rue de Grenelle, 75007 Paris"),
        ("DATE", "15 mars 2025"),
        ("PERSON", "Zoë Brønstad-Çelik"),
    ],
}


def example_output(folder: Path) -> tuple[Path, Path]:
    """A realistic `run` output over examples/documents.jsonl (offsets from the real texts) and a gold file.

    The gold file differs from the output on purpose: the output calls the district judge a PERSON
    (gold: JUDGE), clips "San Francisco, California" and misses "Arturo Benavidez".
    """
    records, gold = [], []
    for index, line in enumerate((EXAMPLES / "documents.jsonl").read_bytes().splitlines()):
        doc = orjson.loads(line)
        text = doc.pop("text")
        doc_id = doc.pop("id")
        base = {"id": doc_id, "index": index, "source": "examples/documents.jsonl", "line": index + 1, "metadata": doc}
        if doc_id == "news-item":
            error = {"kind": "generation_failed", "message": "1 of 1 chunks failed: chunk 0: HTTP 503 (server busy)"}
            records.append(base | {"status": "error", "error": error, "entities": [], "chunks": 1})
            continue
        entities = spans(text, EXAMPLE_ENTITIES[doc_id])
        usage = {"prompt_tokens": 400 + len(text) // 3, "completion_tokens": 25 * len(entities)}
        records.append(base | {"status": "ok", "entities": entities, "chunks": 1, "usage": usage, "ungrounded": 0})
        truth = [e for e in entities if e["text"] not in ("Rosalind M. Haverford", "San Francisco")]
        if doc_id == "court-opinion":
            truth += spans(
                text,
                [
                    ("JUDGE", "Rosalind M. Haverford"),
                    ("LOCATION", "San Francisco, California"),
                    ("PERSON", "Arturo Benavidez"),
                ],
            )
        gold.append({"id": doc_id, "entities": [{k: e[k] for k in ("type", "start", "end")} for e in truth]})
    return write_jsonl(folder / "entities.jsonl", records), write_jsonl(folder / "gold.jsonl", gold)


# ---- the data, without a browser ---------------------------------------------------------------


def test_text_from_inputs_matched_by_index_and_id(tmp_path: Path) -> None:
    out, _ = example_output(tmp_path)
    texts = InputTexts.read([str(EXAMPLES / "documents.jsonl")])
    payload, stats = build_review_data(read_output_records(out), source_name=out.name, texts=texts)
    assert stats.documents == 4 and stats.errors == 1 and stats.without_text == 0
    by_id = {d["id"]: d for d in payload["docs"]}
    court = by_id["court-opinion"]
    assert court["text"].startswith("# UNITED STATES COURT OF APPEALS") and "inputs" in court["from"]
    assert court["notes"] == []  # every entity's text is the document's text at its offsets
    assert by_id["news-item"]["err"].startswith("generation_failed: 1 of 1 chunks failed")
    # Types ordered by frequency, each entity pointing at its type's index.
    counts = dict(zip(payload["types"], payload["summary"]["types"], strict=True))
    assert counts["DATE"] == max(counts.values()) and payload["types"][0] == "DATE"
    assert payload["summary"]["status"] == {"ok": 3, "error": 1}


def test_text_matched_by_id_alone_when_indexes_differ(tmp_path: Path) -> None:
    # A folder run: ids are paths; the review is given the same folder, listed in another order.
    text = (EXAMPLES / "docs" / "news-item.md").read_text()
    doc_id = str(EXAMPLES / "docs" / "news-item.md")
    out = write_jsonl(tmp_path / "o.jsonl", [record(doc_id, spans(text, [("MONEY", "$18.75 million")]), index=9)])
    payload, stats = build_review_data(
        read_output_records(out), source_name="o.jsonl", texts=InputTexts.read([str(EXAMPLES / "docs")])
    )
    assert payload["docs"][0]["text"] == text and stats.warnings == ()
    # The wrong inputs: said once, for all the documents left without text.
    _, stats = build_review_data(
        read_output_records(out), source_name="o.jsonl", texts=InputTexts.read([str(EXAMPLES / "documents.jsonl")])
    )
    assert stats.without_text == 1 and "1 document(s) have no text" in stats.warnings[0]


def test_record_text_wins_and_its_hash_is_checked(tmp_path: Path) -> None:
    text = "Scanned page: Ann Lee paid $5."
    good = record("pdf-1", spans(text, [("PERSON", "Ann Lee")]), text=text, text_sha256=_sha(text))
    out = write_jsonl(tmp_path / "o.jsonl", [good])
    payload, _ = build_review_data(read_output_records(out), source_name="o.jsonl")
    assert payload["docs"][0]["text"] == text and payload["docs"][0]["from"] == "the record"

    bad = good | {"id": "pdf-2", "text_sha256": _sha(text + " ")}
    write_jsonl(out, [good, bad])
    with pytest.raises(InputError, match=r"o\.jsonl:2: document 'pdf-2'.*text_sha256"):
        build_review_data(read_output_records(out), source_name="o.jsonl")


def test_input_text_that_changed_since_the_run_is_refused(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "Ann Lee, edited after the run."}])
    out = write_jsonl(tmp_path / "o.jsonl", [record("a", [], text_sha256=_sha("Ann Lee."))])
    result = runner.invoke(app, ["review", str(out), "--inputs", str(inputs), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "'a'" in result.output and "text_sha256" in result.output
    assert not (tmp_path / "r.html").exists()


def test_without_text_the_page_keeps_the_entities(tmp_path: Path) -> None:
    out = write_jsonl(tmp_path / "o.jsonl", [record("a", [{"type": "PERSON", "text": "Ann", "start": 0, "end": 3}])])
    payload, stats = build_review_data(read_output_records(out), source_name="o.jsonl")
    doc = payload["docs"][0]
    assert doc["text"] is None and "--inputs" in doc["from"] and stats.without_text == 1
    assert doc["ents"] == [[0, 0, 3, NO_GOLD, "Ann"]]  # the surface travels when there is no text


def test_offsets_that_do_not_fit_the_text_are_reported(tmp_path: Path) -> None:
    ents = [
        {"type": "PERSON", "text": "Ann", "start": 0, "end": 3},
        {"type": "PERSON", "text": "Bob", "start": 0, "end": 3},
        {"type": "PERSON", "text": "Eve", "start": 40, "end": 43},
        {"type": "PERSON", "text": "Zed", "start": -1, "end": -1, "grounded": False},
    ]
    out = write_jsonl(tmp_path / "o.jsonl", [record("a", ents, text="Ann and Bob")])
    doc = build_review_data(read_output_records(out), source_name="o.jsonl")[0]["docs"][0]
    assert any("differ from the document" in n for n in doc["notes"])
    assert any("outside the text" in n for n in doc["notes"])
    assert [e[1:] for e in doc["ents"]] == [[0, 3, 0], [0, 3, 0, "Bob"], [40, 43, 0, "Eve"], [-1, -1, 0, "Zed"]]


def test_gold_comparison_is_strict() -> None:
    text = "Ann Lee met Bob Ray in Oslo on May 1."
    predicted = spans(text, [("PERSON", "Ann Lee"), ("PERSON", "Bob"), ("LOCATION", "Oslo"), ("DATE", "May 1")])
    gold_spans = spans(text, [("PERSON", "Ann Lee"), ("PERSON", "Bob Ray"), ("LOCATION", "Oslo"), ("PERSON", "May 1")])
    gold = {"a": GoldDocument("a", text, tuple(GoldSpan(g["type"], g["start"], g["end"]) for g in gold_spans), 1)}
    payload, stats = build_review_data([(1, record("a", predicted))], source_name="o.jsonl", gold=gold)
    doc = payload["docs"][0]
    assert [e[3] for e in doc["ents"]] == [MATCH, FALSE_POSITIVE, MATCH, FALSE_POSITIVE, MISSED, MISSED]
    assert doc["gold"] == {"tp": 2, "fp": 2, "fn": 2, "p": 0.5, "r": 0.5, "f1": 0.5}
    assert doc["text"] == text and doc["from"] == "the gold file"
    assert stats.gold_documents == 1 and payload["summary"]["gold"]["f1"] == 0.5


def test_types_filter_both_sides_and_fixes_the_colour_order() -> None:
    text = "Ann Lee met Bob in Oslo."
    predicted = spans(text, [("PERSON", "Ann Lee"), ("LOCATION", "Oslo"), ("PERSON", "Bob")])
    gold = {"a": GoldDocument("a", None, (GoldSpan("LOCATION", 19, 23), GoldSpan("DATE", 0, 3)), 1)}
    payload, stats = build_review_data(
        [(1, record("a", predicted, text=text))], source_name="o", gold=gold, types=["LOCATION", "ORGANIZATION"]
    )
    assert payload["types"] == ["LOCATION", "ORGANIZATION"]
    assert payload["docs"][0]["ents"] == [[0, 19, 23, MATCH]] and stats.entities == 1
    assert payload["docs"][0]["gold"]["f1"] == 1.0


def test_document_text_cannot_close_the_data_block() -> None:
    payload, _ = build_review_data([(1, record("<b>x</b>", [], text=HOSTILE))], source_name="o</script>.jsonl")
    page = render_page(payload)
    assert page.count("</script>") == 2  # the JSON block's and the program's own
    assert "<script>window.pwned" not in page and "\\u003cscript>window.pwned" in page
    assert "<title>vllm-extract review: o&lt;/script&gt;.jsonl</title>" in page
    assert "default-src 'none'" in page and "https:" not in page and "http:" not in page


def test_output_reading(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    path.write_bytes(b'{"id": "a"}\n\n{"id": "b"}\n{"id": "c", "entit')  # a run still writing
    assert [r["id"] for _, r in read_output_records(path)] == ["a", "b"]
    path.write_bytes(b'{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(InputError, match=r"o\.jsonl:2: not valid JSON"):
        list(read_output_records(path))


def test_cli_writes_one_self_contained_page(tmp_path: Path) -> None:
    out, gold = example_output(tmp_path)
    page = tmp_path / "review.html"
    args = ["review", str(out), "--out", str(page), "--inputs", str(EXAMPLES / "documents.jsonl"), "--gold", str(gold)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "4 documents" in result.output and "1 with errors" in result.output
    html = page.read_text()
    assert html.startswith("<!doctype html>")
    assert re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", html) is None  # nothing loads from outside
    assert runner.invoke(app, ["review", str(out), "--out", str(out)]).exit_code == 2  # never over the records
    assert runner.invoke(app, ["review", str(tmp_path / "nope.jsonl"), "--out", str(page)]).exit_code == 2
    # An existing page is replaced only with --overwrite; an input the page is made from, never.
    page.write_text("earlier page")
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "already exists" in refused.output and page.read_text() == "earlier page"
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0 and page.read_text().startswith("<!doctype")
    source = tmp_path / "inputs.jsonl"
    source.write_bytes((EXAMPLES / "documents.jsonl").read_bytes())
    over_input = runner.invoke(app, ["review", str(out), "--inputs", str(source), "--out", str(source), "--overwrite"])
    assert over_input.exit_code == 2 and "is an input file" in over_input.output
    assert source.read_bytes() == (EXAMPLES / "documents.jsonl").read_bytes()


def test_write_review_refuses_a_missing_output_folder(tmp_path: Path) -> None:
    out = write_jsonl(tmp_path / "o.jsonl", [record("a", [])])
    with pytest.raises(OutputError, match="does not exist"):
        write_review(out, tmp_path / "missing" / "r.html")


# ---- the page in headless Chromium ----------------------------------------------------------------

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str | None:
    for candidate in (os.environ.get("VLLM_EXTRACT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (Debian's, driven by Playwright; no browser download)."""
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable, reason = None, "Playwright is not installed (pip install -e '.[dev]')"
    else:
        reason = "Chromium is not installed (run scripts/system-deps, or set VLLM_EXTRACT_CHROMIUM)"
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the browser tests")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """``open_page(html_path, bypass_csp=False)``: a fresh offline page at 1440x900, ready when it returns.

    Pages keep their Content-Security-Policy (it forbids eval, so tests wait with locators, not
    ``wait_for_function``); ``bypass_csp`` turns it off to show what the page's own code does.
    """
    contexts: list[Any] = []
    requests: list[str] = []
    errors: list[str] = []

    def opener(path: Path, *, bypass_csp: bool = False) -> Any:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, offline=True, bypass_csp=bypass_csp)
        contexts.append(context)
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url) if not r.url.startswith("file:") else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("html[data-ready]", timeout=30_000)
        return page

    yield opener
    for context in contexts:
        context.close()
    assert errors == [], f"script errors on the page: {errors}"
    assert requests == [], f"the page tried the network: {requests}"


def _marked(page: Any) -> list[int]:
    """Distinct entity indexes highlighted in the open document (a crossing span is several pieces)."""
    return page.eval_on_selector_all(
        "#doc-text mark.ent", "ms => Array.from(new Set(ms.map(m => Number(m.dataset.i)))).sort((a, b) => a - b)"
    )


def test_page_highlights_every_entity_with_hover_focus_and_table(open_page: Any, tmp_path: Path) -> None:
    out, _ = example_output(tmp_path)
    html = tmp_path / "review.html"
    write_review(out, html, inputs=[str(EXAMPLES / "documents.jsonl")])
    records = {r["id"]: r for _, r in read_output_records(out)}
    page = open_page(html)

    # Each document: as many highlighted spans as entities, each showing the record's words.
    for n, doc_id in enumerate(["court-opinion", "supply-agreement", "notice-accents"]):
        page.evaluate(f"window.reviewPage.open({[0, 1, 3][n]})")
        assert page.inner_text("#doc-head h2").startswith(doc_id)
        expected = records[doc_id]["entities"]
        assert _marked(page) == list(range(len(expected)))
        words = page.eval_on_selector_all("#doc-text mark.ent[tabindex]", "ms => ms.map(m => m.textContent)")
        assert sorted(words) == sorted(e["text"] for e in expected)
        assert page.locator("#ent-rows tr").count() == len(expected)

    # Keyboard focus shows the type and the code-point offsets (the notice has CJK before its euro).
    money = next(i for i, e in enumerate(records["notice-accents"]["entities"]) if e["type"] == "MONEY")
    page.focus(f"#ent-{money}")
    assert page.is_visible("#tip")
    start, end = (records["notice-accents"]["entities"][money][k] for k in ("start", "end"))
    assert page.inner_text("#tip") == f"MONEY [{start}, {end})\n€2.400.000"
    # Hover works too.
    page.evaluate("window.reviewPage.open(0)")
    page.hover("#ent-6")
    assert "PERSON" in page.inner_text("#tip") and "Rosalind M. Haverford" in page.inner_text("#tip")

    # Clicking a table row scrolls its span into view and focuses it; so does Enter on a row.
    last = len(records["court-opinion"]["entities"]) - 1
    page.click(f'#ent-rows tr[data-i="{last}"]')
    assert page.evaluate("document.activeElement.id") == f"ent-{last}"
    box = page.locator(f"#ent-{last}").bounding_box()
    assert box is not None and 0 <= box["y"] <= 900
    page.focus('#ent-rows tr[data-i="0"]')
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "ent-0"

    # The error document shows its message, in the list and when opened.
    assert "HTTP 503" in page.inner_text(".doc-row[data-n='2']")
    page.click(".doc-row[data-n='2']")
    assert "HTTP 503 (server busy)" in page.inner_text(".error-box")
    assert page.evaluate("location.hash") == "#doc=2"

    # Search by id ("/" goes to the search box), and filter by status.
    page.keyboard.press("/")
    page.keyboard.type("supply")
    expect(page.locator("#doc-list li")).to_have_count(1)
    assert page.inner_text("#list-count") == "1 of 4 documents"
    page.fill("#search", "")
    page.select_option("#status-filter", "error")
    expect(page.locator("#doc-list li")).to_have_count(1)
    assert page.inner_text("#doc-list .doc-id") == "news-item"


def test_astral_characters_keep_code_point_offsets(open_page: Any, tmp_path: Path) -> None:
    text = "😀🎉 Ann met 👩‍⚖️ Bob in 𝐎𝐬𝐥𝐨."
    ents = spans(text, [("PERSON", "Ann"), ("PERSON", "Bob"), ("LOCATION", "𝐎𝐬𝐥𝐨")])
    assert [e["start"] for e in ents] == [3, 16, 23]  # code points; in UTF-16 units: 5, 19, 26
    html = tmp_path / "r.html"
    write_review(write_jsonl(tmp_path / "o.jsonl", [record("emoji", ents, text=text)]), html)
    page = open_page(html)
    words = page.eval_on_selector_all("#doc-text mark.ent", "ms => ms.map(m => m.textContent)")
    assert words == ["Ann", "Bob", "𝐎𝐬𝐥𝐨"]
    assert page.eval_on_selector_all("#ent-rows td:nth-child(2)", "tds => tds.map(t => t.textContent)") == words


def test_document_text_is_data_never_markup(open_page: Any, tmp_path: Path) -> None:
    ents = spans(HOSTILE, [("PERSON", "Ann Lee"), ("PERSON", "Bob Ray")])
    hostile_id = '<img src=x onerror="window.pwned=3">'
    out = write_jsonl(tmp_path / "o.jsonl", [record(hostile_id, ents, text=HOSTILE, metadata={"title": "</title>"})])
    html = tmp_path / "r.html"
    write_review(out, html)
    # Without the page's Content-Security-Policy: its code alone must keep the text inert.
    page = open_page(html, bypass_csp=True)
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.title() == "vllm-extract review: o.jsonl"
    assert page.inner_text("#doc-text") == HOSTILE  # literally, entities and all
    assert page.inner_text("#doc-head h2").startswith(hostile_id)
    assert page.locator("#doc-text *:not(mark)").count() == 0
    assert page.locator("img").count() == 0 and page.locator("script").count() == 2  # the page's own two
    assert _marked(page) == [0, 1]


def test_gold_marks_on_a_small_case(open_page: Any, tmp_path: Path) -> None:
    text = "Ann Lee met Bob Ray in Oslo on May 1, 2024."
    predicted = spans(text, [("PERSON", "Ann Lee"), ("PERSON", "Bob"), ("LOCATION", "Oslo"), ("DATE", "May 1")])
    truth = spans(text, [("PERSON", "Ann Lee"), ("PERSON", "Bob Ray"), ("LOCATION", "Oslo"), ("DATE", "May 1, 2024")])
    out = write_jsonl(
        tmp_path / "o.jsonl", [record("a", predicted, text=text), record("b", [], index=1, text="Nothing.")]
    )
    gold = write_jsonl(tmp_path / "g.jsonl", [{"id": "a", "entities": truth}, {"id": "b"}, {"id": "c"}])
    html = tmp_path / "r.html"
    stats = write_review(out, html, gold_path=gold)
    assert stats.gold_not_in_output == ("c",)
    page = open_page(html)

    def count(cls: str) -> int:
        return page.eval_on_selector_all(f"#doc-text mark.{cls}", "ms => new Set(ms.map(m => m.dataset.i)).size")

    assert (count("g1"), count("g2"), count("g3")) == (2, 2, 2)  # matches, false positives, missed
    assert page.eval_on_selector_all("#doc-text mark.g1", "ms => ms.map(m => m.textContent)") == ["Ann Lee", "Oslo"]
    # A missed span and the false positive inside it nest ("Bob" within "Bob Ray").
    assert page.eval_on_selector("#doc-text mark.g3 > mark.g2", "m => m.textContent") in ("Bob", "May 1")
    assert page.inner_text(".doc-row[data-n='0'] .f1") == "F1 0.50"
    assert page.inner_text(".doc-row[data-n='1'] .f1") == "F1 \u2014"  # nothing predicted, nothing in gold
    states = page.eval_on_selector_all("#ent-rows .gold-state", "tds => tds.map(t => t.textContent)")
    assert sorted(states) == sorted(["\u2713 match"] * 2 + ["\u2717 FP"] * 2 + ["\u25cc missed"] * 2)
    summary = page.inner_text("#charts")
    assert "matches 2 · false positives 2 · missed 2" in summary and "1 gold document(s) have no record" in summary
    page.focus("#doc-text mark.g3")
    assert "missed" in page.inner_text("#tip")


def test_screenshot_of_the_examples(open_page: Any, tmp_path: Path) -> None:
    """The README's picture: REVIEW_SCREENSHOT=docs/review.png pytest tests/test_review.py -k screenshot."""
    out, gold = example_output(tmp_path)
    html = tmp_path / "review.html"
    write_review(out, html, inputs=[os.path.relpath(EXAMPLES / "documents.jsonl")], gold_path=gold)
    page = open_page(html)
    # The district judge, called a PERSON: a false positive inside the missed gold JUDGE span.
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.hover("#ent-6")
    at = (EXAMPLES / "docs" / "court-opinion.md").read_text().index("Rosalind M. Haverford")
    judge = f"[{at}, {at + 21})"
    assert page.inner_text("#tip") == (
        f"JUDGE {judge} · missed\nRosalind M. Haverford\nPERSON {judge} · false positive\nRosalind M. Haverford"
    )
    shot = tmp_path / "review.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    assert page.inner_text(".doc-row[data-n='0'] .f1") == "F1 0.94"  # 41 matches, 2 false positives, 3 missed
    if os.environ.get("REVIEW_SCREENSHOT"):  # how docs/review.png is made
        shutil.copyfile(shot, os.environ["REVIEW_SCREENSHOT"])


def large_output(folder: Path, documents: int = 5000) -> tuple[Path, Path]:
    """``documents`` generated documents (about 1.9 kB and 14 entities each) as inputs and run output."""
    sentences = [
        "On {d} {p} of {o} signed the agreement in {l} for {m}.",
        "The court in {l} heard {p} on {d} and awarded {m} against {o}.",
        "{o} appointed {p} as its counsel; payment of {m} is due by {d} in {l}.",
    ]
    inputs, records = [], []
    for n in range(documents):
        parts: list[str] = []
        entities: list[dict[str, Any]] = []
        for k in range(10):
            values = {
                "d": f"May {1 + (n + k) % 28}, 20{10 + k}",
                "p": f"Person {n}-{k} Smith",
                "o": f"Company {n % 97}-{k} Ltd.",
                "l": ["Oslo", "Lyon", "Tokyo", "Lima"][(n + k) % 4],
                "m": f"${(n * 37 + k) % 1000},000",
            }
            sentence = sentences[(n + k) % 3]
            offset = sum(len(p) + 1 for p in parts)
            filled = sentence.format(**values)
            # Four entities in each of the first three sentences, a location in the next two: 14 in all.
            wanted = (("p", "PERSON"), ("o", "ORGANIZATION"), ("m", "MONEY"), ("d", "DATE")) if k < 3 else ()
            wanted += (("l", "LOCATION"),) if 3 <= k < 5 else ()
            for key, etype in wanted:
                start = offset + filled.index(values[key])
                entities.append({"type": etype, "text": values[key], "start": start, "end": start + len(values[key])})
            parts.append(filled)
        text = " ".join(parts) + "\n\n" + "Filler text about the case. " * 20
        doc_id = f"doc-{n:05d}"
        inputs.append({"id": doc_id, "text": text})
        failed = {"status": "error", "error": {"kind": "generation_failed", "message": "timeout"}}
        records.append(record(doc_id, entities, index=n) | (failed if n % 250 == 7 else {}))
    return write_jsonl(folder / "in.jsonl", inputs), write_jsonl(folder / "out.jsonl", records)


def test_five_thousand_documents_open_fast(open_page: Any, tmp_path: Path) -> None:
    inputs, out = large_output(tmp_path)
    html = tmp_path / "big.html"
    started = time.perf_counter()
    stats = write_review(out, html, inputs=[str(inputs)])
    build_seconds = time.perf_counter() - started
    assert stats.documents == 5000 and stats.without_text == 0

    started = time.perf_counter()
    page = open_page(html)
    open_seconds = time.perf_counter() - started
    ready_ms = page.evaluate("window.reviewPage.timing.readyMs")
    size_mb = html.stat().st_size / 1e6
    print(
        f"\n5,000 documents: {size_mb:.1f} MB, built in {build_seconds:.1f} s, first render {ready_ms:.0f} ms, "
        f"goto+ready {open_seconds:.2f} s"
    )
    assert ready_ms < 5000 and open_seconds < 10
    # Only the list's first page and the first document are drawn.
    assert page.locator("#doc-list li").count() == 200
    assert page.locator("#doc-text mark.ent").count() == 14
    # It stays responsive: a search and opening the last document are quick.
    started = time.perf_counter()
    page.fill("#search", "doc-04999")
    expect(page.locator("#doc-list li")).to_have_count(1)
    page.click("#doc-list .doc-row")
    assert _marked(page) == list(range(14))
    assert time.perf_counter() - started < 3


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
