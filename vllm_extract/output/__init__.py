"""Records out: the output file (writer, resume), the run report and metrics."""

from .writer import OutputWriter, read_records

__all__ = ["OutputWriter", "read_records"]
