"""Pages to text: page spans, page_of, line-end hyphens and running headers/footers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vllm_extract.readers import page_of
from vllm_extract.readers.pages import assemble


def test_spans_separator_and_page_of() -> None:
    built = assemble([["one", "two"], ["three"]])
    assert built.text == "one\ntwo\n\nthree"
    assert built.pages == ((0, 7), (9, 14))
    assert [page_of(i, built.pages) for i in range(len(built.text))] == [1] * 9 + [2] * 5
    assert page_of(-1, built.pages) is None
    assert page_of(len(built.text), built.pages) is None
    assert page_of(0, None) is None and page_of(0, ()) is None


def test_empty_pages_sit_where_the_next_text_starts() -> None:
    built = assemble([[], ["a"], [], [], ["b"], []])
    assert built.text == "a\n\nb"
    assert built.pages == ((0, 0), (0, 1), (3, 3), (3, 3), (3, 4), (4, 4))
    assert [page_of(i, built.pages) for i in range(4)] == [2, 2, 2, 5]


def test_blank_lines_collapse_and_trail() -> None:
    assert assemble([["", "a", "", "", "b  ", ""]]).text == "a\n\nb"


@pytest.mark.parametrize(
    ("lines", "text"),
    [
        (["Ingrid Halvor-", "sen signed."], "Ingrid Halvorsen signed."),
        (["John Smith-", "Jones signed."], "John Smith-Jones signed."),
        (["HALVOR-", "SEN signed."], "HALVOR-SEN signed."),
        (["a well-", "known fact"], "a wellknown fact"),  # the documented cost
        (["Halvor\u00ad", "Sen"], "HalvorSen"),
        (["Иван Петро-", "вич"], "Иван Петрович"),
        (["pages 10-", "12"], "pages 10-\n12"),
        (["Oslo -", "Bergen"], "Oslo -\nBergen"),
        (["ends with-", "", "new paragraph"], "ends with-\n\nnew paragraph"),
        (["Halvor-", "sen-", "dottir"], "Halvorsendottir"),
    ],
)
def test_line_end_hyphens(lines: list[str], text: str) -> None:
    assert assemble([lines], join_hyphens=True).text == text


def test_hyphen_across_a_page_moves_only_the_word() -> None:
    built = assemble([["by Ingrid Halvor-"], ["sen, the buyer"], ["x"]], join_hyphens=True)
    assert built.text == "by Ingrid Halvorsen,\n\nthe buyer\n\nx"
    assert built.pages == ((0, 20), (22, 31), (33, 34))


def test_hyphen_across_a_page_that_empties_the_next_page() -> None:
    built = assemble([["Halvor-"], ["sen"], ["next"]], join_hyphens=True)
    assert built.text == "Halvorsen\n\nnext"
    assert built.pages == ((0, 9), (11, 11), (11, 15))


def _pages(n: int, header: str | None, footer: str | None) -> list[list[str]]:
    pages = []
    for p in range(1, n + 1):
        lines = [f"Body line of page {p} naming clause {p * 7}.", f"More text, {p * 3} items."]
        if header:
            lines.insert(0, header.format(p=p, n=n))
        if footer:
            lines.append(footer.format(p=p, n=n, b=100 + p, q=p - 1))
        pages.append(lines)
    return pages


@pytest.mark.parametrize(
    ("footer", "first"),
    [
        ("Page {p} of {n}", "Page 1 of 4"),
        ("- {p} -", "- 1 -"),
        ("{p}", "1"),
        ("ACME000{b}", "ACME000101"),  # Bates numbers
        (
            "Case 1:21-cv-00123 Document 45 Filed 05/03/21 Page {p} of {n}",
            "Case 1:21-cv-00123 Document 45 Filed 05/03/21 Page 1 of 4",
        ),
        ("Page {q}", "Page 0"),  # numbered from an unnumbered cover
    ],
)
def test_running_footers_with_page_numbers_are_dropped(footer: str, first: str) -> None:
    built = assemble(_pages(4, "CONFIDENTIAL", footer), drop_running=True)
    assert "CONFIDENTIAL" not in built.text and first not in built.text.split("\n")
    assert built.running_lines == ("CONFIDENTIAL", first)
    assert built.text.count("Body line") == 4


def test_lines_that_only_look_alike_stay() -> None:
    built = assemble(_pages(4, None, None), drop_running=True)  # "clause 7", "clause 14": not page numbers
    assert built.running_lines == () and built.text.count("Body line") == 4


def test_running_lines_need_more_than_half_the_pages() -> None:
    pages = _pages(4, None, None)
    pages[0].insert(0, "Draft")
    pages[1].insert(0, "Draft")
    assert assemble(pages, drop_running=True).running_lines == ()
    pages[2].insert(0, "Draft")
    assert assemble(pages, drop_running=True).running_lines == ("Draft",)


def test_single_page_keeps_everything_and_two_pages_can_repeat() -> None:
    assert assemble([["Header", "text"]], drop_running=True).text == "Header\ntext"
    built = assemble([["Header", "one"], ["Header", "two"]], drop_running=True)
    assert built.text == "one\n\ntwo"


def test_repeated_line_in_the_middle_of_a_page_stays() -> None:
    pages = [["a", "b", "Same", "c", "d"] for _ in range(3)]
    assert "Same" in assemble(pages, drop_running=True).text


@given(st.lists(st.lists(st.text(alphabet="ab -\u00ad\n", max_size=8), max_size=5), max_size=5))
def test_spans_are_ordered_and_cover_their_page_text(pages: list[list[str]]) -> None:
    built = assemble(pages, drop_running=True, join_hyphens=True)
    assert len(built.pages) == len(pages)
    previous = 0
    for start, end in built.pages:
        assert previous <= start <= end <= len(built.text)
        previous = end
    outside, position = [], 0
    for start, end in built.pages:
        outside.append(built.text[position:start])
        position = max(position, end)
    outside.append(built.text[position:])
    assert set("".join(outside)) <= {"\n"}  # only page separators lie outside the spans
