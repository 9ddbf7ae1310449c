"""Hostile input, hostile tenants and greedy connections against both services, as figures.

Each part (``scripts/hardening/<part>.py``) starts its own services on free ports with
temporary databases, attacks them and measures what other users see meanwhile.

    .venv/bin/python -m scripts.bench_hardening [--quick] [--part NAME ...]
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Sequence

from scripts.common import met, parser, save, table
from scripts.hardening import Figure

TITLE = "Hardening: what hostile callers change for everyone else"
# module names under scripts/hardening, in the run's order
PARTS: tuple[str, ...] = ("egress", "connections", "feed", "inputs")


def main(argv: Sequence[str]) -> int:
    """Run every part (or those named), print and save one table."""
    p = parser(__doc__)
    p.add_argument("--part", action="append", choices=PARTS, default=None)
    args = p.parse_args(argv)
    figures: list[Figure] = []
    for part in args.part or PARTS:
        started = time.monotonic()
        module = importlib.import_module(f"scripts.hardening.{part}")
        figures += module.measure(args.quick)
        print(f"{part}: {time.monotonic() - started:.0f} s", flush=True)
    rows = [[f.name, f.value, f.goal, met(f.met)] for f in figures]
    notes = "\n".join(f"- **{f.name}**: {f.detail}" for f in figures if f.detail)
    text = "\n\n".join(
        [table("figure | measured | goal | verdict", rows).replace("|---:|", "|---|"), notes]
    )
    headline = [
        [f.name, f.value, "benchmarks.md#hardening-what-hostile-callers-change-for-everyone-else"]
        for f in figures[:2]
    ]
    raw = [f._asdict() for f in figures]
    save("hardening", argv, TITLE, text, headline, raw)
    return 0 if all(f.met for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
