"""Records out: the record contract, the output file (writer, resume, reuse), shards, the report.

records   Record (the output line), ErrorKind, parse_record, text_sha256, the published JSON Schema
writer    OutputWriter (lock, fsync, resume scan), read_records
resume    ResumeGuard / check_resume (--resume cannot mix runs), ReuseIndex (--reuse)
jsonl     the one JSONL line reader and its rule for a torn last line
files     the files beside --out (lock, .run.json, .engine.log, .shard.json), the atomic write
shards    which shard a document is in, a shard's output (ShardOutputWriter) and its manifest
merge     shard outputs checked and merged into one output in input order
report    writing the JSON run report and Prometheus metrics

The output side imports nothing from the input side (readers, extract, run).
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
