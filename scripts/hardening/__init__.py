"""The hardening measurements: each module measures one kind of attack against real services.

Every module has ``measure(quick: bool) -> list[Figure]``; ``scripts/bench_hardening.py`` runs
them in the order of ``PARTS`` and writes one table.
"""

from __future__ import annotations

from typing import NamedTuple


class Figure(NamedTuple):
    """One measured figure of a hardening part, beside its goal."""

    name: str  # what was measured, e.g. "hostile callback URLs accepted"
    value: str  # the measurement as displayed, e.g. "0 of 44"
    goal: str  # e.g. "0 of at least 40"
    met: bool
    detail: str = ""  # how it was measured (one sentence)
