"""The chart: one panel per fault, lag p50 against status requests per job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .matrix import LIBRARY, STRATEGIES
from .report import Report

COLOURS = dict(
    zip(
        STRATEGIES,
        ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"),
        strict=True,
    )
)
MARKERS = {"one job": "o", "sequential": "s", "as_completed": "^", "processes": "D"}
TICKS = {
    1e-4: "0.1 ms",
    1e-3: "1 ms",
    1e-2: "10 ms",
    0.1: "100 ms",
    1.0: "1 s",
    10.0: "10 s",
    100.0: "100 s",
}


def _points(report: Report, fault: str) -> Iterator[tuple[str, str, float, float]]:
    """(shape, strategy, status requests per job, lag p50) of a fault's measured cells."""
    for shape in report.args.shapes:
        for strategy in STRATEGIES:
            if (fig := report.fig(fault, shape, strategy)) is not None and fig.lag_p50 is not None:
                yield shape, strategy, fig.status, max(fig.lag_p50, 1e-4)


def write_chart(report: Report, path: Path) -> str:
    """Lag p50 (log) against status requests per job (symlog), the same axes in every panel
    (lower left is better); what was written, or why not."""
    try:
        import matplotlib
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install -r requirements-bench.txt)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    faults = list(report.args.faults)
    every = [p for fault in faults for p in _points(report, fault)]
    if not every:
        return "chart skipped: no cell was measured"
    x_max = max(p[2] for p in every) * 1.6 + 0.1
    y_min = min(min(p[3] for p in every) / 1.6, 1e-3)
    y_max = max(max(p[3] for p in every) * 1.6, 1.0)
    ticks = [t for t in TICKS if y_min <= t <= y_max]
    cols = min(4, len(faults) + 1)
    rows = -(-(len(faults) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), dpi=110, squeeze=False)
    flat = list(axes.flat)
    for ax, fault in zip(flat, faults, strict=False):
        for shape, strategy, x, y in _points(report, fault):
            ax.scatter(
                [x],
                [y],
                color=COLOURS[strategy],
                marker=MARKERS[shape],
                s=40,
                alpha=0.85,
                zorder=3,
                clip_on=False,
            )
        ax.set_title(fault, fontsize=10)
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlim(0, x_max)
        ax.set_yscale("log")
        ax.set_ylim(y_min, y_max)
        ax.set_yticks(ticks, [TICKS[t] for t in ticks])
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel("status requests per job", fontsize=8)
        ax.set_ylabel("lag p50", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [
        Line2D([], [], color=c, marker="o", ls="", label=s + ("" if s == LIBRARY else " (poller)"))
        for s, c in COLOURS.items()
    ]
    handles += [
        Line2D([], [], color="black", marker=m, ls="", fillstyle="none", label=shape)
        for shape, m in MARKERS.items()
        if shape in report.args.shapes
    ]
    for ax in flat[len(faults) :]:
        ax.axis("off")
    flat[len(faults)].legend(handles=handles, loc="center", fontsize=8, frameon=False)
    fig.suptitle(
        "Learning that a job ended: lag p50 against status requests per job "
        "(lower left is better; the pollers are the same run in every panel)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"chart: {path}"
