"""The run: a job decided once, then driven from inputs to records.

plan      ``RunPlan``: model, context, decoding and fingerprint, decided before any engine loads
budgets   the token budget rules, written once (``TokenEstimator`` asks them too)
pipeline  ``ExtractionPipeline``: documents -> chunks -> prompts -> native batches -> records
runner    a whole job: output, resume, client, pipeline, report (``run_job``, ``open_run``)
dry_run   ``plan_job``: what a run would do, without an engine (``vllm-extract plan``)
report    the run report's content
paths     checks on the files a command writes, against what it reads
shards    the input side of ``--shard``: ``ShardFilter`` and a finished shard's manifest
merge     ``merge_shards``: paths checked, shards merged, missing documents named from the inputs

This package never imports Typer or rich; ``vllm_extract.cli`` drives it.
"""
