"""The simulated translation backend: worker slots, durations, outcomes and faults.

One scheduler thread does all the work. It ends the attempts that are due (as ``attempt_end``
rules), hands free slots to queued jobs (priority, then age), and then sleeps until the next
attempt is due or until it is woken by a new job, so a job becomes final within milliseconds
of its due time without ticking. Every step reads the database afresh; with several server
instances on one database, each fills its own slots and ends its own attempts, and those of an
instance whose lease has passed (``leases.py``). Every random draw comes from one
seeded source, under a lock.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from client_lib.models import Outcome, WebhookMode

from .background import Loop
from .config import Settings
from .estimator import estimated_progress
from .leases import Lease
from .reads import JobReads
from .records import JobRecord
from .states import State
from .store import FINISH_BATCH, Store, final_values

log = logging.getLogger(__name__)

MIN_ESTIMATE_FACTOR = 0.3
DELAY = "delay"  # a fault mode only the server draws; callers pin deliver, drop or duplicate
IDLE_WAIT_S = 5.0


def attempt_end(job: JobRecord, now: float) -> tuple[State, dict[str, Any]]:
    """How a processing attempt ends: the target state and the columns it sets.

    Completed once the planned failures are spent; else queued again while attempts remain;
    else an error, at the progress the estimator showed.
    """
    if job.attempts > job.planned_failures:
        result = {"video_url": f"https://cdn.vt.local/{job.id}/{job.target_language}.mp4"}
        return State.COMPLETED, final_values(now, progress=1.0, result=result, error=None)
    if job.attempts < job.max_attempts:
        return State.QUEUED, {"started_at": None, "due_at": None}
    error = {
        "code": "translation_failed",
        "message": f"simulated translation failure after {job.attempts} attempt(s)",
    }
    progress = estimated_progress(job, now)
    return State.ERROR, final_values(now, progress=progress, result=None, error=error)


class Simulator:
    """Plans jobs at creation and runs them through the worker slots."""

    def __init__(
        self,
        store: Store,
        reads: JobReads,
        settings: Settings,
        on_final: Callable[[list[JobRecord]], None] | None = None,
        lease: Lease | None = None,
    ) -> None:
        self._store = store
        self._lease = lease
        self._had_free = True
        self._reads = reads
        self._settings = settings
        self._rng = random.Random(settings.seed)
        self._rng_lock = threading.Lock()
        self._loop = Loop("vt-scheduler", lambda: self.step(time.time()))
        self._on_final = on_final or (lambda jobs: None)

    # --------------------------------------------------------------- planning

    def plan(self, simulate: dict[str, Any]) -> dict[str, Any]:
        """Draw a new job's duration, estimator distortion and outcome, once and for all."""
        s = self._settings
        with self._rng_lock:
            duration = simulate.get("duration_s")
            if duration is None:
                duration = self._rng.uniform(s.duration_min, s.duration_max)
            factor = max(MIN_ESTIMATE_FACTOR, self._rng.gauss(1.0, s.estimate_noise))
            factor = simulate.get("estimate_factor", factor)  # drawn either way: seeds hold
            outcome = simulate.get("outcome", Outcome.RANDOM.value)
            if outcome == Outcome.COMPLETED:
                failures = 0
            elif outcome == Outcome.ERROR:
                failures = s.max_attempts
            else:
                failures = 0
                while failures < s.max_attempts and self._rng.random() < s.error_rate:
                    failures += 1
        return {
            "duration_s": float(duration),
            "estimate_factor": factor,
            "planned_failures": failures,
            "max_attempts": s.max_attempts,
            "webhook_mode": simulate.get("webhook"),
        }

    def webhook_fault(self, job: JobRecord) -> tuple[str, float]:
        """The fate of a job's webhook, (mode, hold-back seconds): pinned, else the fault rates.

        Modes: deliver; drop (recorded, never sent, not retried: a lost message); duplicate
        (sent twice); delay (held back by ``--fault-delay-seconds``, then delivered).
        """
        if job.webhook_mode:
            return job.webhook_mode, 0.0
        s = self._settings
        with self._rng_lock:
            draw = self._rng.random()
        for mode, rate in (
            (WebhookMode.DROP.value, s.fault_drop_webhook),
            (WebhookMode.DUPLICATE.value, s.fault_duplicate_webhook),
            (DELAY, s.fault_delay_webhook),
        ):
            if draw < rate:
                return mode, s.fault_delay_seconds if mode == DELAY else 0.0
            draw -= rate
        return WebhookMode.DELIVER.value, 0.0

    def fraction(self) -> float:
        """A seeded draw in [0, 1) (the webhook retry jitter uses it: one random source)."""
        with self._rng_lock:
            return self._rng.random()

    def chance(self, rate: float) -> bool:
        """A seeded coin flip (fault injection on requests)."""
        if rate <= 0:
            return False
        with self._rng_lock:
            return self._rng.random() < rate

    # -------------------------------------------------------------- scheduling

    def start(self) -> None:
        """Start the scheduler thread."""
        self._loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the scheduler thread and wait for it."""
        self._loop.stop(timeout)

    def wake(self) -> None:
        """Tell the scheduler that something changed (a new or cancelled job)."""
        self._loop.wake()

    def wake_for_peer(self) -> None:
        """Another instance queued a job: look for it, unless every slot here is taken (a
        slot freeing up makes the scheduler look anyway)."""
        if self._had_free:
            self._loop.wake()

    def step(self, now: float) -> float:
        """Renew the lease, end due attempts (this instance's, and those of instances whose
        lease passed), fill free slots; returns how long to sleep until the next due."""
        if self._lease is not None:
            self._lease.renew(now)
        owner = self._store.owner
        while True:
            finished = self._store.finish_due(
                now=now, end=attempt_end, fault=self.webhook_fault, batch=FINISH_BATCH
            )
            final = [j for j in finished if j.state.is_final]
            if final:
                self._on_final(final)
            if len(finished) < FINISH_BATCH:
                break
        free = self._settings.workers - self._reads.count_running(owner)
        started = self._store.claim(now=now, limit=free)
        self._had_free = len(started) < free
        next_due = self._reads.next_due_at(owner=owner, now=now)
        wait = IDLE_WAIT_S if next_due is None else max(0.0, next_due - time.time())
        # the lease is renewed in time, and other instances' expired jobs are looked for
        return wait if self._lease is None else min(wait, self._lease.renew_every)
