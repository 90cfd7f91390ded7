"""Regenerate the published record schema: ``python -m vllm_extract.output schema/record.schema.json``."""

import sys

from .records import main

raise SystemExit(main(sys.argv[1:]))
