"""``python -m pipeline.search``: the search stage (see :mod:`pipeline.search.stage`)."""

from pipeline.search.stage import main

if __name__ == "__main__":
    main()
