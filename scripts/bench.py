"""``make bench``: every benchmark, one after the other, on this machine, in one run.

Each script prints its own markdown table and writes its raw numbers to bench-results/:
  bench_server.py      GET /v1/jobs/{id} against a bare Flask+waitress endpoint (ratio)
  bench_webhooks.py    webhook dispatch latency and burst delivery rate
  bench_receiver.py    the callback receiver: arrival-to-feed latency of a waiting long-poll
  bench_waiting.py     this library vs the usual pollers, in every shape of calling code and
                       under every webhook fault: lag and requests per job (also
                       docs/waiting-benchmark.md and .png)
  bench_scale.py       10,000 jobs in flight: all resolved, server memory, status p99
``--only NAME`` (repeatable) runs a subset; the machine and load are printed first, since
absolute figures depend on them (the ratios are what carry over).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = (
    "bench_server",
    "bench_webhooks",
    "bench_receiver",
    "bench_waiting",
    "bench_scale",
)


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=SCRIPTS, default=None)
    args = parser.parse_args()
    info = machine()
    print(
        f"# Benchmarks, {info['date']}: {info['cpu']}, {info['cores']} cores, "
        f"Python {info['python']}, load {info['load_avg']}\n",
        flush=True,
    )
    results = {}
    for name in args.only or SCRIPTS:
        print(f"\n## {name}\n", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(ROOT / "scripts" / f"{name}.py")], cwd=ROOT)
        results[name] = {"exit_code": code, "seconds": round(time.monotonic() - started, 1)}
    out = ROOT / "bench-results" / "summary.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": info, "runs": results}, indent=2))
    print(
        f"\nraw numbers in {out.parent}/: "
        + ", ".join(sorted(p.name for p in out.parent.iterdir()))
    )
    return 0 if all(r["exit_code"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
