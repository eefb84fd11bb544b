"""Benchmarks: `python -m bench` (see bench/__main__.py). Imports nothing, so any Python can run
the helper modules (bench.rq_enqueue runs under an interpreter that has rq)."""
