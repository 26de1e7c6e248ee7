"""vault-dr's benchmarks: `python -m bench` (bench/runner.py); docs/performance.md."""
