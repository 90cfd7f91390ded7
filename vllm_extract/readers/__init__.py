"""Inputs of every format become ``Document`` values (or ``BadInput`` error items), in input order."""

from .documents import BadInput, Document, InputItem, SkippedFile, count_documents, iter_documents

__all__ = ["BadInput", "Document", "InputItem", "SkippedFile", "count_documents", "iter_documents"]
