"""Write the PDF, DOCX and HTML versions of the example documents into ``examples/docs/``.

    python examples/make_binary_examples.py      # needs fpdf2 and python-docx (the dev extra)

- ``court-opinion.pdf`` from ``court-opinion.md`` (fpdf2): a caption page, then the opinion set in
  two columns, with a running header and a "Page N of M" footer on every page; both are dropped
  when the PDF is read, and the columns are read one after the other.
- ``supply-agreement.docx`` from ``supply-agreement.txt`` (python-docx): headings, a footnote on
  the pricing schedule, and the signature blocks as a two-column table.
- ``news-item.html`` from ``news-item.md``: the article between a site header, navigation, a
  sidebar, a footer and scripts, which the reader leaves out.

The outputs are committed; the script rewrites them byte for byte the same (fixed dates, fixed
ZIP timestamps), so a rerun shows no diff unless the sources or the writers changed. The PDF
embeds DejaVu Sans (for "§" and "—"), from ``/usr/share/fonts/truetype/dejavu``.
"""

from __future__ import annotations

import html
import io
import re
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

DOCS = Path(__file__).resolve().parent / "docs"
FONTS = Path("/usr/share/fonts/truetype/dejavu")
WHEN = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def _paragraphs(markdown: str) -> list[str]:
    """Markdown paragraphs as plain text: headings, emphasis and rules removed, lines joined."""
    out = []
    for block in re.split(r"\n\s*\n", markdown.strip()):
        lines = [re.sub(r"^#+\s*", "", line).strip() for line in block.splitlines()]
        text = " ".join(line for line in lines if line and line != "---")
        text = text.replace("**", "").replace("*", "")
        if text:
            out.append(text)
    return out


def court_opinion_pdf() -> bytes:
    from fpdf import FPDF

    paragraphs = _paragraphs((DOCS / "court-opinion.md").read_text(encoding="utf-8"))
    split = paragraphs.index("OPINION")
    caption, opinion = paragraphs[:split], paragraphs[split:]

    class Opinion(FPDF):
        def header(self) -> None:
            self.set_font("DejaVu", size=8)
            self.cell(0, 5, "MERIDIAN ORCHARD HOLDINGS v. CASCADE RIDGE LOGISTICS  ·  No. 22-15873", align="C")
            self.ln(9)

        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("DejaVu", size=8)
            self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="C")

    pdf = Opinion(format="Letter")
    pdf.set_creation_date(WHEN)
    pdf.set_title("Meridian Orchard Holdings v. Cascade Ridge Logistics (9th Cir. 2024)")
    pdf.set_author("Invented example")
    pdf.add_font("DejaVu", fname=str(FONTS / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", style="B", fname=str(FONTS / "DejaVuSans-Bold.ttf"))
    pdf.set_margins(22, 20, 22)
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_page()
    pdf.set_font("DejaVu", size=10.5)
    for paragraph in caption:
        pdf.multi_cell(0, 5.5, paragraph, align="C")
        pdf.ln(2.5)
    pdf.add_page()
    with pdf.text_columns(ncols=2, gutter=8, text_align="J", l_margin=22, r_margin=22) as columns:
        for paragraph in opinion:
            bold = paragraph == "OPINION" or re.match(r"^[IVX]+\. ", paragraph) is not None
            pdf.set_font("DejaVu", style="B" if bold else "", size=10)
            columns.write(paragraph + "\n")
            columns.ln(0.5)
    return bytes(pdf.output())


def supply_agreement_docx() -> bytes:
    import docx
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    text = (DOCS / "supply-agreement.txt").read_text(encoding="utf-8")
    body, _, signatures = text.partition("HALVORSEN POLYMER WORKS, INC.")
    document = docx.Document()
    properties = document.core_properties
    properties.title = "Master Supply Agreement"
    properties.author = properties.last_modified_by = "Invented example"
    properties.created = properties.modified = WHEN.replace(tzinfo=None)
    properties.revision = 1
    for block in re.split(r"\n\s*\n", body.strip()):
        block = block.strip()
        if block.isupper():
            document.add_heading(
                block.title() if len(block) > 30 else block, level=1 if block.startswith("MASTER") else 2
            )
            continue
        paragraph = document.add_paragraph(block)
        if block.startswith("3.3 "):  # a footnote on the price schedule
            run = OxmlElement("w:r")
            ref = OxmlElement("w:footnoteReference")
            ref.set(qn("w:id"), "1")
            run.append(ref)
            paragraph._p.append(run)
    notes = (
        f'<w:footnotes xmlns:w="{W_NS}">'
        '<w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>'
        '<w:footnote w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/></w:r></w:p>'
        '</w:footnote><w:footnote w:id="1"><w:p><w:r><w:footnoteRef/></w:r><w:r><w:t xml:space="preserve"> '
        "Schedule B was agreed by Priya Ramaswamy for Buyer on March 20, 2024.</w:t></w:r></w:p></w:footnote>"
        "</w:footnotes>"
    )
    part = Part(
        PackURI("/word/footnotes.xml"),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml",
        notes.encode(),
        document.part.package,
    )
    document.part.relate_to(part, RT.FOOTNOTES)
    document.add_page_break()
    blocks = [b.strip() for b in ("HALVORSEN POLYMER WORKS, INC." + signatures).strip().split("\n\n")]
    parties = ["\n".join(blocks[i : i + 2]) for i in range(0, len(blocks), 2)]  # company name, then its block
    table = document.add_table(rows=1, cols=2)
    for cell, block in zip(table.rows[0].cells, parties, strict=True):
        lines = block.splitlines()
        cell.text = lines[0]
        for line in lines[1:]:
            cell.add_paragraph(line)
    buffer = io.BytesIO()
    document.save(buffer)
    return _fixed_zip(buffer.getvalue())


def _fixed_zip(data: bytes) -> bytes:
    """The same ZIP with fixed timestamps and order, so that reruns are byte-identical."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            info = zipfile.ZipInfo(name, date_time=(2024, 3, 4, 12, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, source.read(name))
    return out.getvalue()


def news_item_html() -> bytes:
    paragraphs = _paragraphs((DOCS / "news-item.md").read_text(encoding="utf-8"))
    title, byline, *body = paragraphs
    article = "\n".join(f"    <p>{html.escape(p)}</p>" for p in body)
    page = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{html.escape(title)} | The Columbus Ledger</title>
  <style>body {{ font-family: Georgia, serif; max-width: 46em; margin: auto; }}</style>
  <script>window.analytics = {{ page: "news", author: "Tracking Pixel Inc." }};</script>
</head>
<body>
  <header><a href="/">The Columbus Ledger</a> <a href="/login">Sign in</a></header>
  <nav><ul><li><a href="/business">Business</a></li><li><a href="/courts">Courts</a></li>
    <li><a href="/opinion">Opinion</a></li></ul></nav>
  <main>
  <article>
    <header><h1>{html.escape(title)}</h1><p class="byline">{html.escape(byline)}</p></header>
{article}
  </article>
  </main>
  <aside><h2>Most read</h2><ul><li>Okafor Dairy recalls yogurt cups</li></ul></aside>
  <footer>&copy; 2025 The Columbus Ledger. All rights reserved.</footer>
  <script src="/static/ads.js"></script>
</body>
</html>
"""
    return page.encode("utf-8")


def main() -> int:
    outputs = {
        "court-opinion.pdf": court_opinion_pdf,
        "supply-agreement.docx": supply_agreement_docx,
        "news-item.html": news_item_html,
    }
    for name, make in outputs.items():
        path = DOCS / name
        path.write_bytes(make())
        print(f"wrote {path.relative_to(DOCS.parent.parent)} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
