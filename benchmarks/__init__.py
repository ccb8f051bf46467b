"""Throughput and overhead benchmarks (run with ``make bench`` or ``python -m benchmarks``).

Timings live here, never in test asserts. Each measured case runs in its own subprocess so that its
CPU time and peak RSS are its own; the driver (``benchmarks.__main__``) owns the broker and the data.
"""
