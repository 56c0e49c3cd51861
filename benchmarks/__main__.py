"""``python -m benchmarks``: the issue-6 performance table (see bench_performance.py)."""

import sys

from benchmarks.bench_performance import main

sys.exit(main())
