"""``make bench``: every benchmark, one after the other, then the documents that report them.

    .venv/bin/python -m scripts.bench [--quick] [--only NAME ...]

Each benchmark runs in a process of its own (``python -m scripts.bench_<name>``) and writes
``bench-results/<name>.json``; from those this script writes docs/benchmarks.md (machine, date,
the exact commands, then each benchmark's definitions and tables) and rewrites the README's
table between ``<!-- results:start -->`` and ``<!-- results:end -->``. ``bench_waiting`` also
writes docs/waiting-benchmark.md and its chart. ``--only`` runs a subset and writes no document:
the documents report one whole run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from scripts.common import RESULTS, ROOT, command, describe_machine, machine, parser, table

BENCHMARKS = (
    "server",
    "webhooks",
    "receiver",
    "waiting",
    "clients",
    "scale",
    "hardening",
    "cluster",
    "dashboard",
)  # the run's order
HEADLINE = (
    "waiting",
    "clients",
    "webhooks",
    "receiver",
    "server",
    "scale",
    "hardening",
    "cluster",
    "dashboard",
)  # the README's order
START, END = "<!-- results:start -->", "<!-- results:end -->"
QUICK_NOTE = (
    "**Quick mode** (`make bench-quick`): every benchmark smaller and shorter, to check that "
    "all of them run; the figures to quote come from `make bench`."
)


def run(name: str, quick: bool) -> dict[str, Any]:
    """Run one benchmark; what it saved (if anything), its command, time and exit status."""
    module, argv, path = (
        f"scripts.bench_{name}",
        ["--quick"] if quick else [],
        RESULTS / f"{name}.json",
    )
    print(f"\n## {name}: {command(module, argv)}\n", flush=True)
    path.unlink(missing_ok=True)
    started = time.monotonic()
    code = subprocess.call([sys.executable, "-m", module, *argv], cwd=ROOT)
    saved = json.loads(path.read_text()) if path.exists() else {"command": command(module, argv)}
    return {**saved, "exit_code": code, "seconds": round(time.monotonic() - started)}


def headline(results: dict[str, dict[str, Any]], prefix: str) -> str:
    """The headline figures of every benchmark, each linked to its detail under ``prefix``."""
    rows = [
        f"[{figure}]({prefix}{link}) | {value}"
        for name in HEADLINE
        for figure, value, link in results.get(name, {}).get("headline", [])
    ]
    return table("figure | value", rows).replace("|---:|", "|---|")


def benchmarks_md(results: dict[str, dict[str, Any]], info: dict[str, Any], quick: bool) -> str:
    """docs/benchmarks.md: how the run was made, the headline figures, each benchmark."""
    total = sum(r["seconds"] for r in results.values()) / 60
    lines = [
        "# Benchmarks",
        "Written by `make bench` (`scripts/bench.py`) from one run of every benchmark; every "
        "figure below is what that run measured." + (f" {QUICK_NOTE}" if quick else ""),
        f"- machine: {describe_machine(info)}\n- date: {info['date']}\n- command: `"
        f"{command('scripts.bench', ['--quick'] if quick else [])}` ({total:.1f} min), which ran:\n"
        + "\n".join(
            f"  - `{r['command']}` ({r['seconds']} s, exit status {r['exit_code']})"
            for r in results.values()
        )
        + "\n- raw figures: `bench-results/*.json` (not kept in git)",
        f"## Headline figures\n\n{headline(results, '')}",
    ]
    for name, r in results.items():
        failed = f"\n\n**It exited with status {r['exit_code']}**." if r["exit_code"] else ""
        lines += [f"## {r.get('title', name)}\n\n`{r['command']}`{failed}"]
        lines += [r.get("markdown", "It wrote no figures.")]
    return "\n\n".join(lines).replace("](benchmarks.md#", "](#") + "\n"


def write_docs(results: dict[str, dict[str, Any]], info: dict[str, Any], quick: bool) -> None:
    """docs/benchmarks.md, and the README's block between the markers."""
    (ROOT / "docs" / "benchmarks.md").write_text(benchmarks_md(results, info, quick))
    mode = " in quick mode (smaller runs: see docs/benchmarks.md)" if quick else ""
    block = (
        f"{START}\n\nMeasured by `make bench` on {info['date'][:10]} ({info['cpu']}, "
        f"{info['cores']} cores){mode}:\n\n{headline(results, 'docs/')}\n\n{END}"
    )
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block to rewrite")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    readme.write_text(pattern.sub(lambda _: block, text, count=1))
    print("\nwritten: docs/benchmarks.md, README.md (results)", flush=True)


def main(argv: Sequence[str]) -> int:
    """Run the benchmarks; write the documents unless ``--only`` chose a subset."""
    p = parser(__doc__)
    p.add_argument("--only", action="append", choices=BENCHMARKS, default=None)
    args = p.parse_args(argv)
    info = machine()
    print(f"# Benchmarks, {info['date']}: {describe_machine(info)}", flush=True)
    results = {name: run(name, args.quick) for name in args.only or BENCHMARKS}
    if not args.only:
        write_docs(results, info, args.quick)
    minutes = sum(r["seconds"] for r in results.values()) / 60
    print(f"\n{len(results)} benchmarks in {minutes:.1f} min", flush=True)
    return 0 if all(r["exit_code"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
