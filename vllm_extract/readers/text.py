"""Plain text files (``.txt``, ``.md`` and any other suffix given directly): UTF-8, read whole.

The document text is the file's text exactly (a leading UTF-8 byte-order mark removed), so the
record needs no copy of it. Checks, in order:

- ``binary``: a NUL byte anywhere in the file (one ``bytes.find``, memchr speed, over the whole
  file, not only its first block). A UTF-16 file (which is full of NULs) says so.
- ``not_utf8``: the bytes do not decode as UTF-8.
- ``empty``: nothing but whitespace after decoding: the BOM, Unicode spaces (NBSP U+00A0,
  ideographic space U+3000, ...), and the invisible U+200B-U+200D, U+2060, U+FEFF, U+00AD.
"""

from __future__ import annotations

from ._items import BadInput, Document, Origin

__all__ = ["decode_text", "is_blank", "read_text_file"]

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def is_blank(text: str) -> bool:
    """True when ``text`` holds only whitespace and invisible characters."""
    return not text.translate(_INVISIBLE).strip()


def decode_text(data: bytes, name: str) -> str | tuple[str, str]:
    """The text of a file's bytes, or ``(kind, message)`` when they are binary or not UTF-8."""
    nul = data.find(b"\x00")
    if nul >= 0:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return "not_utf8", f"{name} is UTF-16 (byte-order mark), not UTF-8: convert it to UTF-8"
        return "binary", f"{name} looks binary (NUL byte at offset {nul}), not text"
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return "not_utf8", f"{name} is not UTF-8 (byte {exc.start}: {exc.reason})"


def read_text_file(origin: Origin) -> Document | BadInput:
    """Read one text file whole. The caller has checked it is a regular file (or chose to read a pipe)."""
    try:
        with open(origin.path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        return origin.bad("unreadable", f"cannot read {origin.name}: {exc.strerror}")
    decoded = decode_text(data, origin.name)
    if isinstance(decoded, tuple):
        return origin.bad(*decoded)
    if is_blank(decoded):
        return origin.bad("empty", f"{origin.name} is empty" if not data else f"{origin.name} holds only whitespace")
    return Document(origin.name, decoded, origin.name, origin.index)
