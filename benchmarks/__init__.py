"""Benchmark scripts (run them as files: `python benchmarks/<name>.py`); results go to docs/benchmarks.md."""
