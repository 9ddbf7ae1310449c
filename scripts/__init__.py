"""The benchmarks (``make bench``) and ``make run``; run from the project root, e.g.
``.venv/bin/python -m scripts.bench --quick``."""
