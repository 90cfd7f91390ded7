"""Rendering the review payload into one self-contained HTML file.

The page is ``template.html`` with ``review.css`` and ``review.js`` inlined and the payload embedded
as JSON in a ``<script type="application/json">`` block. Every ``<`` in that JSON is written as
``\\u003c``, so no document text (``</script>``, ``<!--``) can end the block or start markup; the
script builds the page with ``textContent`` only. A Content-Security-Policy allows no network
access at all and only the page's own script and style (by their SHA-256 hashes), so even markup
that did slip in could neither run nor load anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from functools import cache
from importlib import resources
from typing import Any

import orjson

__all__ = ["render_page"]

_SLOT = re.compile(r"<!--REVIEW:([A-Z]+)-->")


def render_page(payload: dict[str, Any]) -> str:
    """The complete HTML page for a payload from ``build_review_data``."""
    template, style, script = _assets()
    data = orjson.dumps(payload).decode("utf-8").replace("<", "\\u003c")
    csp = (
        "default-src 'none'; "
        f"script-src '{_sha256(script)}'; "
        f"style-src '{_sha256(style)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    slots = {
        "CSP": csp,
        "TITLE": html.escape(str(payload.get("title", "vllm-extract review"))),
        "STYLE": style,
        "SCRIPT": script,
        "DATA": data,
    }
    # One pass: text put into a slot is never searched for slots again.
    return _SLOT.sub(lambda m: slots[m.group(1)], template)


@cache
def _assets() -> tuple[str, str, str]:
    folder = resources.files(__package__)
    template, style, script = (
        (folder / name).read_text(encoding="utf-8") for name in ("template.html", "review.css", "review.js")
    )
    for name, text, closing in (("review.css", style, "</style"), ("review.js", script, "</script")):
        if closing in text.lower():
            raise RuntimeError(f"{name} must not contain {closing!r}")  # pragma: no cover - a packaging bug
    return template, style, script


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")
