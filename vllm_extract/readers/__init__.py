"""Inputs of every format become ``Document`` values (or ``BadInput`` error items), in input order.

Formats: JSONL (one document per line), UTF-8 text files, and, converted to text, PDF, DOCX and
HTML (PDF and HTML need the ``docs`` extra). A converted document carries ``pages`` (character
spans of its pages in its text); ``page_of`` turns an offset into a 1-based page number.
"""

from .documents import (
    CONVERTED_SUFFIXES,
    DEFAULT_GLOBS,
    BadInput,
    Document,
    InputItem,
    SkippedFile,
    count_documents,
    iter_documents,
)
from .pages import page_of

__all__ = [
    "CONVERTED_SUFFIXES",
    "DEFAULT_GLOBS",
    "BadInput",
    "Document",
    "InputItem",
    "SkippedFile",
    "count_documents",
    "iter_documents",
    "page_of",
]
