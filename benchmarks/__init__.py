"""Benchmarks: scripts that print measured tables (run them with ``python -m benchmarks.<name>``).

Figures and the machine they ran on are recorded in ``docs/benchmarks.md``; tests only smoke-run
them and never assert timings.
"""
