"""The job state machine: the one table of which state may follow which.

Internally a job is in one of five states; publicly ``queued`` and ``processing`` are both the
status ``pending`` (with ``stage`` telling them apart). Only the store changes a state, and it
does so with an UPDATE guarded by this table, so an illegal transition changes no row.
"""

from __future__ import annotations

from enum import StrEnum

from client_lib.models import JobStatus, Stage


class State(StrEnum):
    """A job's internal state."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def status(self) -> JobStatus:
        """The public status: ``pending`` while queued or processing, else the state itself."""
        return _STATUS[self]

    @property
    def stage(self) -> Stage | None:
        """The public stage (only while pending)."""
        return _STAGE[self]

    @property
    def is_final(self) -> bool:
        """True when no transition leaves this state."""
        return self in _FINAL


TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.PROCESSING, State.CANCELLED}),
    # processing -> queued is the server-side retry of a failed attempt
    State.PROCESSING: frozenset({State.COMPLETED, State.ERROR, State.QUEUED, State.CANCELLED}),
    State.COMPLETED: frozenset(),
    State.ERROR: frozenset(),
    State.CANCELLED: frozenset(),
}


# Looked up on every job rendered: worked out once.
_STATUS = {
    s: JobStatus.PENDING if s in (State.QUEUED, State.PROCESSING) else JobStatus(s.value)
    for s in State
}
_STAGE = {s: Stage(s.value) if _STATUS[s] is JobStatus.PENDING else None for s in State}
_FINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


def sources_of(target: State) -> list[str]:
    """Every state from which ``target`` may be entered (the guard of an UPDATE)."""
    return [s.value for s, targets in TRANSITIONS.items() if target in targets]


def states_for_status(status: JobStatus) -> list[str]:
    """The internal states behind one public status (for filtering)."""
    return [s.value for s in State if s.status is status]


class InvalidTransition(Exception):
    """A state change that the table forbids (or a job that moved on meanwhile)."""

    def __init__(self, job_id: str, current: State, target: State) -> None:
        super().__init__(f"{job_id}: cannot go from {current} to {target}")
        self.job_id = job_id
        self.current = current
        self.target = target
