"""Records out: the record contract, the output file (writer, resume, reuse), the run report.

records   Record (the output line), ErrorKind, parse_record, the published JSON Schema
writer    OutputWriter (lock, fsync, resume scan), read_records
resume    ResumeGuard / check_resume (--resume cannot mix runs), ReuseIndex (--reuse)
report    the JSON run report and Prometheus metrics
"""

from .records import (
    EntityRecord,
    ErrorInfo,
    ErrorKind,
    Record,
    RecordError,
    Usage,
    parse_record,
    record_json_schema,
)
from .resume import DoneRecord, ResumeGuard, ReuseIndex, check_resume
from .writer import OutputWriter, read_records

__all__ = [
    "DoneRecord",
    "EntityRecord",
    "ErrorInfo",
    "ErrorKind",
    "OutputWriter",
    "Record",
    "RecordError",
    "ResumeGuard",
    "ReuseIndex",
    "Usage",
    "check_resume",
    "parse_record",
    "read_records",
    "record_json_schema",
]
