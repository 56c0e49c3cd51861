"""``python -m pipeline.book book=<experiment> [overrides]``: see :mod:`pipeline.book`."""

from pipeline.book.cli import main

if __name__ == "__main__":
    main()
