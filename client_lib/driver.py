"""The sync client's waiting: the core's actions carried out over HTTP, by whichever thread
is waiting (one at a time drives the shared feed connection; the others wait for it)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from .actions import Action, Lookup, PinFeed, ReadFeed, Sleep
from .backend import Services
from .clock import Clock
from .errors import AuthenticationError, TranslationError, WaitTimeout
from .models import Job
from .waiting import WaitCore
from .waitpolicy import Detection

LOOKUPS_MAX = 10  # jobs never seen are looked up at the receiver first, when this few


class Waiting:
    """Drives a ``WaitCore`` for a sync client."""

    def __init__(
        self,
        core: WaitCore,
        services: Services,
        clock: Clock,
        *,
        get_jobs: Callable[[Sequence[str]], list[Job]],
        get_job: Callable[[str], Job],
    ) -> None:
        self.core = core
        self.lock = threading.RLock()  # guards the core; I/O happens outside it
        self._services = services
        self._clock = clock
        self._get_jobs = get_jobs
        self._get_job = get_job
        self._driving = False
        self._cond = threading.Condition()

    def forget(self, job_id: str) -> None:
        """Stop following a job, and drop what is kept of it."""
        with self.lock:
            self.core.forget(job_id)

    def track(self, job: Job, mark: int | None) -> None:
        """Follow a job from now on (one this client created; ``mark``: ``pin_feed``'s)."""
        with self.lock:
            self.core.track(job, self._clock.now(), mark)

    def as_completed(self, ids: list[str], timeout: float | None) -> Iterator[Job]:
        """Each job as it ends, in the order they end (WaitTimeout at the deadline)."""
        started = self._clock.now()
        deadline = None if timeout is None else started + timeout
        with self.lock:
            mark = self.core.finished_since(0)[1]
        self.track_ids(ids)
        remaining = set(ids)
        ready = list(ids)  # some may have ended before
        while True:
            for job_id in ready:
                if job_id not in remaining:
                    continue
                with self.lock:
                    detection = self.core.result(job_id)  # raises if it vanished
                if detection is not None:
                    remaining.discard(job_id)
                    yield detection.job
            if not remaining:
                return
            with self.lock:
                ready, mark = self.core.finished_since(mark)
            if ready:
                continue
            now = self._clock.now()
            if deadline is not None and now >= deadline:
                self._timeout(sorted(remaining)[0], now - started)
            self.drive(None if deadline is None else deadline - now)

    def pin_feed(self) -> int:
        """Pin the feed position before creating a job, so none of its events is missed; the
        core's read mark, for ``track``."""
        with self.lock:
            needed = self.core.needs_pin(self._clock.now())
        if needed:
            self.run(PinFeed())
        with self.lock:
            return self.core.read_mark()

    def track_ids(self, ids: Sequence[str]) -> None:
        """Follow these jobs; only those the client never saw cost a first request."""
        with self.lock:
            mark = self.core.read_mark()
            self.core.want(ids, self._clock.now())
            unknown = [i for i in ids if not self.core.knows(i, self._clock.now())]
        if not unknown:
            return
        if len(unknown) <= LOOKUPS_MAX:  # the receiver may hold their end: no status request
            unknown = [i for i in unknown if not self._found_at_receiver(i)]
            if not unknown:
                return
        self.pin_feed()  # before the look-up: an end after it is then in the feed
        fetched = {j.id: j for j in self._get_jobs(unknown)}
        for job_id in unknown:
            if job_id not in fetched:
                self._get_job(job_id)  # not visible to this client: raises JobNotFound
        with self.lock:
            for job in fetched.values():
                self.core.track(job, self._clock.now(), mark)

    def _found_at_receiver(self, job_id: str) -> bool:
        try:
            final = self._services.final_event(job_id)
        except AuthenticationError:
            raise  # a wrong or missing feed token
        except TranslationError:
            return False  # the receiver is not reachable: ask the server
        if final is None:
            return False
        with self.lock:
            self.core.on_lookup(job_id, final, self._clock.now())
        return True

    def wait_for(
        self, job_id: str, timeout: float | None, on_update: Callable[[Job], None] | None
    ) -> Detection:
        """Drive, or wait for whoever drives, until the job ended."""
        started = self._clock.now()
        deadline = None if timeout is None else started + timeout
        self.track_ids([job_id])
        shown: tuple[Any, ...] | None = None
        while True:
            with self.lock:
                detection = self.core.result(job_id)
                last = self.core.last_known(job_id)
            if on_update is not None and last is not None:
                state = (last.status, last.stage, round(last.progress, 2))
                if state != shown:
                    shown = state
                    on_update(last)
            if detection is not None:
                return detection
            now = self._clock.now()
            if deadline is not None and now >= deadline:
                self._timeout(job_id, now - started)
            self.drive(None if deadline is None else deadline - now)

    def _timeout(self, job_id: str, waited: float) -> NoReturn:
        with self.lock:
            last = self.core.last_known(job_id)
        raise WaitTimeout(job_id, last.status if last else None, waited)

    def drive(self, budget: float | None) -> None:
        """Carry out the core's next action, unless another thread is already driving it."""
        with self._cond:
            if self._driving:
                self._cond.wait(timeout=min(budget or 1.0, 1.0))
                return
            self._driving = True
        try:
            with self.lock:
                action = self.core.next_action(self._clock.now(), max_block=budget)
            self.run(action)
        finally:
            with self._cond:
                self._driving = False
                self._cond.notify_all()

    def run(self, action: Action) -> None:
        """One action of the core, its I/O here, its outcome fed back."""
        backend = self._services
        core = self.core
        try:
            if isinstance(action, Sleep):
                self._clock.sleep(action.seconds)
            elif isinstance(action, PinFeed):
                cursor = backend.feed_latest()
                with self.lock:
                    core.feed_pinned(cursor, self._clock.now())
            elif isinstance(action, ReadFeed):
                events, cursor, channels = backend.feed(action.after, action.wait, action.jobs)
                with self.lock:
                    core.on_feed(events, cursor, self._clock.now(), channels)
            elif isinstance(action, Lookup):
                final = backend.final_event(action.job_id)
                with self.lock:
                    core.on_lookup(action.job_id, final, self._clock.now())
            else:
                try:
                    jobs = backend.status_many(action.job_ids)
                except TranslationError as exc:
                    with self.lock:
                        core.on_status_error(action.job_ids, exc, self._clock.now())
                    return
                with self.lock:
                    core.on_statuses(action.job_ids, jobs, self._clock.now())
        except AuthenticationError:
            raise  # the feed refused its token: the caller's to fix, never a cause to poll
        except TranslationError as exc:  # the receiver's (a status failure is handled above)
            with self.lock:
                core.on_feed_error(exc, self._clock.now())
