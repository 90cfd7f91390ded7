"""HTML reading: the main text without scripts, styles and navigation, as one page."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("selectolax")

from vllm_extract.readers import BadInput, Document, iter_documents, page_of

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Halvorsen v. Nordlys AS</title>
<style>p { color: red }</style>
<script>var tracker = "Evil Name"; document.title = "Per Olsen";</script></head>
<body>
<header class="site"><a href="/">Home</a> | <a href="/cases">Cases</a> | Search</header>
<nav><ul><li>Opinions</li><li>Dockets</li><li>Judge Kari Nordmann's page</li></ul></nav>
<div class="cookie" role="banner">We use cookies.</div>
<article>
  <header><h1>Halvorsen v. Nordlys AS</h1><p>Filed 3 May 2021</p></header>
  <p>The court, per Judge <b>Ingrid&nbsp;Halvorsen</b>, holds
     that the contract   binds the   parties.</p>
  <p>Counsel:<br>Per Olsen for the appellant.</p>
  <table><tr><th>Party</th><th>Role</th></tr><tr><td>Nordlys AS</td><td>Respondent</td></tr></table>
  <div hidden>hidden draft</div><div style="display: none">invisible</div>
  <ul><li>Reversed.</li><li>Remanded.</li></ul>
  <footer>Opinion footer stays.</footer>
</article>
<aside>Related: Olsen v. Berg</aside>
<footer>&copy; Court of Appeal</footer>
<script>document.write("Injected Name")</script>
</body></html>
"""

ARTICLE_TEXT = (
    "Halvorsen v. Nordlys AS\n\nFiled 3 May 2021\n\n"
    "The court, per Judge Ingrid Halvorsen, holds that the contract binds the parties.\n\n"
    "Counsel:\nPer Olsen for the appellant.\n\n"
    "Party\tRole\nNordlys AS\tRespondent\n\n"
    "Reversed.\nRemanded.\n\n"
    "Opinion footer stays."
)


def _read(path: Path) -> Document | BadInput:
    (item,) = iter_documents([str(path)])
    assert isinstance(item, Document | BadInput)
    return item


def test_article_between_navigation_and_scripts(tmp_path: Path) -> None:
    path = tmp_path / "opinion.html"
    path.write_text(PAGE, encoding="utf-8")
    doc = _read(path)
    assert isinstance(doc, Document) and doc.converted
    assert doc.text == ARTICLE_TEXT
    assert doc.pages == ((0, len(ARTICLE_TEXT)),)
    assert doc.metadata["title"] == "Halvorsen v. Nordlys AS" and doc.metadata["page_count"] == 1
    for name in ("Ingrid Halvorsen", "Per Olsen"):
        start = doc.text.index(name)
        assert doc.text[start : start + len(name)] == name
        assert page_of(start, doc.pages) == 1
    for gone in (
        "Evil Name",
        "Injected Name",
        "Kari Nordmann",
        "cookies",
        "Olsen v. Berg",
        "Court of Appeal",
        "hidden",
    ):
        assert gone not in doc.text


def test_main_element_wins_and_body_without_article_drops_page_chrome(tmp_path: Path) -> None:
    main = tmp_path / "main.htm"
    main.write_text("<body><div>Outside</div><main><p>Inside main.</p></main></body>", encoding="utf-8")
    plain = tmp_path / "plain.html"
    plain.write_text(
        "<body><header>Site name</header><div>Body <i>text</i> here.</div><footer>Legal</footer></body>",
        encoding="utf-8",
    )
    items = list(iter_documents([str(main), str(plain)]))
    assert [getattr(i, "text", None) for i in items] == ["Inside main.", "Body text here."]


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ('<meta charset="iso-8859-1"><p>Zoë Müller</p>'.encode("latin-1"), "Zoë Müller"),
        (
            '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252"><p>Œuvre €5</p>'.encode(
                "cp1252"
            ),
            "Œuvre €5",
        ),
        ("<p>Łódź</p>".encode(), "Łódź"),
        ("<p>café</p>".encode("cp1252"), "café"),  # not UTF-8, no declaration: windows-1252
        ("\ufeff<p>Иван Петров</p>".encode("utf-16-le"), "Иван Петров"),
    ],
)
def test_encodings(tmp_path: Path, data: bytes, text: str) -> None:
    path = tmp_path / "enc.html"
    path.write_bytes(data)
    doc = _read(path)
    assert isinstance(doc, Document) and doc.text == text


def test_page_with_only_scripts_and_navigation_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "shell.html"
    path.write_text("<html><body><nav>Menu</nav><script>app()</script>&nbsp;</body></html>", encoding="utf-8")
    bad = _read(path)
    assert isinstance(bad, BadInput) and bad.kind == "empty"


def test_without_the_docs_extra_html_is_a_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm_extract.readers import html as html_reader

    monkeypatch.setattr(html_reader, "_lexbor", lambda: None)
    path = tmp_path / "page.html"
    path.write_text("<p>x</p>", encoding="utf-8")
    bad = _read(path)
    assert isinstance(bad, BadInput) and bad.kind == "missing_extra"
    assert "pip install 'vllm-extract[docs]'" in bad.message
