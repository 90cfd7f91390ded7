"""The run: a job decided once, then driven from inputs to records.

plan      ``RunPlan``: model, context, budgets, decoding and fingerprint, decided before any engine loads
pipeline  ``ExtractionPipeline``: documents -> chunks -> prompts -> native batches -> records
runner    a whole job: output, resume, client, pipeline, report (``run_job``, ``open_run``)

This package never imports Typer or rich; ``vllm_extract.cli`` drives it.
"""
