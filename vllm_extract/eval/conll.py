"""CoNLL/BIO token files to gold documents (``vllm-extract gold from-conll``).

Input: one token per line, columns separated by spaces or tabs, the token in the first column and
its tag in the last; a blank line between sentences; a line whose first column is ``-DOCSTART-``
between documents (a file without any is one document). Tags are ``O`` or ``PREFIX-TYPE`` with
PREFIX one of B, I, E, S (and L, U, M as used by BILOU): IOB1, IOB2, IOBES and BILOU are all read
by one decoder, so the same entities come out whichever scheme a file uses. A bare ``TYPE`` tag is
read as ``I-TYPE`` (IO files).

Text: tokens joined by one space, sentences by a newline, except that no space is put before
closing punctuation (``, . ; : ! ? ) ] } %`` and clitics ``'s n't ...``) nor after opening
brackets and ``$``. Spans are computed while the text is built, so ``text[start:end]`` is always
the entity's tokens as joined.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..exceptions import InputError
from .gold import GoldDocument, GoldSpan

__all__ = ["DOCSTART", "read_conll"]

DOCSTART = "-DOCSTART-"
_NO_SPACE_BEFORE = {
    ",",
    ".",
    ";",
    ":",
    "!",
    "?",
    ")",
    "]",
    "}",
    "%",
    "'s",
    "'S",
    "n't",
    "'re",
    "'ve",
    "'ll",
    "'d",
    "'m",
}
_NO_SPACE_AFTER = {"(", "[", "{", "$"}
_BEGIN, _INSIDE, _END, _SINGLE = "B", "I", "E", "S"
_PREFIXES = {"B": _BEGIN, "I": _INSIDE, "M": _INSIDE, "E": _END, "L": _END, "S": _SINGLE, "U": _SINGLE}


@dataclass
class _Token:
    text: str
    tag: str
    line: int


def read_conll(path: Path, *, id_prefix: str | None = None, per_sentence: bool = False) -> list[GoldDocument]:
    """Read a CoNLL/BIO file into gold documents (with ``text``), in file order.

    Ids are ``{id_prefix}-{n}`` (n from 1; the prefix defaults to the file's stem). With
    ``per_sentence`` every sentence is its own document. Documents without tokens are skipped.
    ``GoldDocument.line`` is the line of the document's first token. Raises ``InputError`` naming
    the line for a line without a tag column or a tag that is not ``O``/``PREFIX-TYPE``.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a leading BOM is not text
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read CoNLL file {path}: {exc}", hint="expected a UTF-8 text file") from None
    prefix = id_prefix if id_prefix is not None else path.stem
    documents: list[list[list[_Token]]] = [[[]]]  # documents > sentences > tokens
    for line_no, line in enumerate(lines, start=1):
        columns = line.split()
        if not columns:
            if documents[-1][-1]:
                documents[-1].append([])
            continue
        if columns[0] == DOCSTART:
            documents.append([[]])
            continue
        if len(columns) < 2:
            raise InputError(
                f"{path}:{line_no}: expected a token and a tag, got {line.strip()!r}",
                hint="one token per line, the tag in the last column",
            )
        documents[-1][-1].append(_Token(columns[0], columns[-1], line_no))
    if per_sentence:
        documents = [[sentence] for doc in documents for sentence in doc]
    out: list[GoldDocument] = []
    for sentences in documents:
        sentences = [s for s in sentences if s]
        if not sentences:
            continue
        out.append(_build(sentences, f"{prefix}-{len(out) + 1}", path))
    return out


def _build(sentences: list[list[_Token]], doc_id: str, path: Path) -> GoldDocument:
    parts: list[str] = []
    length = 0
    spans: list[GoldSpan] = []
    for s_index, sentence in enumerate(sentences):
        if s_index:
            parts.append("\n")
            length += 1
        open_type: str | None = None
        open_start = 0
        last_end = length
        previous: str | None = None
        for t_index, token in enumerate(sentence):
            if t_index and token.text not in _NO_SPACE_BEFORE and previous not in _NO_SPACE_AFTER:
                parts.append(" ")
                length += 1
            start, end = length, length + len(token.text)
            parts.append(token.text)
            length = end
            previous = token.text
            kind, etype = _parse_tag(token, path)
            if kind is None:  # O
                if open_type is not None:
                    spans.append(GoldSpan(open_type, open_start, last_end))
                    open_type = None
            elif (kind == _INSIDE and open_type == etype) or (kind == _END and open_type == etype):
                pass  # continues the open entity
            else:  # B, S, or I/E that cannot continue: a new entity starts here
                if open_type is not None:
                    spans.append(GoldSpan(open_type, open_start, last_end))
                open_type, open_start = etype, start
            last_end = end
            if kind in (_END, _SINGLE) and open_type is not None:
                spans.append(GoldSpan(open_type, open_start, end))
                open_type = None
        if open_type is not None:
            spans.append(GoldSpan(open_type, open_start, last_end))
    return GoldDocument(doc_id, "".join(parts), tuple(spans), sentences[0][0].line)


def _parse_tag(token: _Token, path: Path) -> tuple[str | None, str]:
    tag = token.tag
    if tag == "O":
        return None, ""
    prefix, sep, etype = tag.partition("-")
    if not sep:
        return _INSIDE, tag  # IO scheme: a bare type
    if prefix.upper() not in _PREFIXES or not etype:
        raise InputError(
            f"{path}:{token.line}: tag {tag!r} is not O or PREFIX-TYPE",
            hint="prefixes B, I, E, S (IOB1, IOB2, IOBES) or B, I, L, U (BILOU)",
        )
    return _PREFIXES[prefix.upper()], etype
