"""Benchmarks of the project (not tests): run each module as a script, e.g.
``python benchmarks/bench_training.py`` or ``python -m benchmarks.bench_training``.
"""
