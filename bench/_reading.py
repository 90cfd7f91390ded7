"""Reading speed of PDF inputs: pages per second through ``iter_documents`` on a generated PDF.

    python bench/_reading.py [--pages 200]      # prints the measure() dict as JSON

The PDF is written by fpdf2 from ``bench/corpus.py`` paragraphs (deterministic for a seed): a
running header and a "Page N of M" footer on every page, justified body text in DejaVu Sans
(the corpus has accented names), one two-column page in five (fpdf2 ``text_columns``). Writing
the file is not timed; reading is the whole reader path a run takes (open, PDFium text, reading
order, running-line removal, hyphen joins, page spans). No engine is started.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import _paragraph  # the corpus's own text generator

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def write_pdf(path: Path, pages: int, *, seed: int = 1234) -> Path:
    """Write a ``pages``-page PDF of corpus paragraphs to ``path`` (fpdf2)."""
    from fpdf import FPDF

    rng = random.Random(seed)
    pdf = FPDF(format="Letter")
    if FONT.is_file():
        pdf.add_font("Body", fname=str(FONT))
        family = "Body"
    else:  # core font: Latin-1 only
        family = "Helvetica"
    pdf.set_auto_page_break(False)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font(family, size=8)
        pdf.set_xy(20, 10)
        pdf.cell(0, 5, "IN THE UNITED STATES DISTRICT COURT - CASE No. 3:21-cv-04417", align="C")
        pdf.set_xy(20, 268)
        pdf.cell(0, 5, f"Page {number} of {pages}", align="C")
        pdf.set_font(family, size=10)
        pdf.set_xy(20, 22)
        text = "\n".join(_paragraph(rng, rng.choice(["opinion", "contract", "news"])) for _ in range(6))
        if family == "Helvetica":
            text = text.encode("latin-1", "replace").decode("latin-1")
        if number % 5 == 0:
            with pdf.text_columns(ncols=2, gutter=8, text_align="J", l_margin=20, r_margin=20) as columns:
                columns.write(text[:3500])
        else:
            pdf.multi_cell(176, 5, text[:3300], align="J", max_line_height=5)
    pdf.output(str(path))
    return path


def measure(pages: int = 200, *, repeats: int = 3) -> dict[str, Any]:
    """Read a generated ``pages``-page PDF ``repeats`` times; median timings.

    Returns ``{"pages", "file_bytes", "chars", "seconds", "pages_per_second", "ms_per_page",
    "repeats", "write_seconds"}``: seconds of one whole read (median), characters of text read.
    """
    from vllm_extract.readers import Document, iter_documents

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"bench-{pages}.pdf"
        started = time.perf_counter()
        write_pdf(path, pages)
        write_seconds = time.perf_counter() - started
        timings: list[float] = []
        chars = 0
        for _ in range(repeats):
            started = time.perf_counter()
            (item,) = iter_documents([str(path)])
            timings.append(time.perf_counter() - started)
            if not isinstance(item, Document):
                raise RuntimeError(f"the benchmark PDF did not read: {item}")
            if item.metadata["page_count"] != pages:
                raise RuntimeError(f"expected {pages} pages, read {item.metadata['page_count']}")
            chars = len(item.text)
        seconds = statistics.median(timings)
        return {
            "pages": pages,
            "file_bytes": path.stat().st_size,
            "chars": chars,
            "seconds": round(seconds, 3),
            "pages_per_second": round(pages / seconds, 1),
            "ms_per_page": round(1000 * seconds / pages, 2),
            "repeats": repeats,
            "write_seconds": round(write_seconds, 2),
        }


def main() -> None:
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.pages, repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()
