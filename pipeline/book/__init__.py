"""The experiments of *Neural Networks and Deep Learning*, one command each.

    python -m pipeline.book book=ch5_depth                 # the book's settings
    python -m pipeline.book book=ch5_depth book.epochs=3 data=digits tracking=off

Each experiment is a config in ``conf/book/`` (the book's settings as the default, one entry
per row) composed with the project's ``conf/`` (data, tracking, paths). Every row is an MLflow
run in the chapter's experiment (``nndl-book-ch5``); the results go to
``reports/book/<experiment>.md`` (the book's figure beside ours) and ``reports/book/index.md``.

Experiments: ``ch1``, ``ch3_slowdown``, ``ch3_overfitting``, ``ch3_init``,
``ch4_universality``, ``ch5_depth``, ``ch6_cnn``.
"""

from __future__ import annotations

# experiment name -> module under pipeline.book that defines ``run(ctx) -> Page``
EXPERIMENTS = {
    "ch1": "pipeline.book.ch1",
    "ch3_slowdown": "pipeline.book.ch3_slowdown",
    "ch3_overfitting": "pipeline.book.ch3_overfitting",
    "ch3_init": "pipeline.book.ch3_init",
    "ch4_universality": "pipeline.book.ch4_universality",
    "ch5_depth": "pipeline.book.ch5_depth",
    "ch6_cnn": "pipeline.book.ch6_cnn",
}

__all__ = ["EXPERIMENTS"]
