"""Several server instances on one PostgreSQL database: their own worker slots, leases that hand
a gone instance's jobs to another, one final state and one webhook per job, gapless channel
numbers, idempotency keys and the rate limit across instances, and NOTIFY wake-ups."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from tests.conftest import ADMIN_TOKEN
from tests.pgsupport import query
from tests.support import wait_until
from tests.unit.test_server_errors import assert_problem
from tests.unit.test_server_store import new_job
from translation_server.notify import Listener
from translation_server.runtime import Runtime
from translation_server.schema import channel_events, jobs, webhook_events
from translation_server.simulation import attempt_end
from translation_server.states import State

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.parametrize("db_engine", ["postgresql"], indirect=True),
]
URL = "http://127.0.0.1:9/webhooks"


def runtimes(make_app: Any, count: int = 2, **settings: Any) -> list[Runtime]:
    return [make_app(**settings).extensions["vt"] for _ in range(count)]


def count(runtime: Runtime, table: Any, *where: Any) -> int:
    with runtime.db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar())


def test_each_instance_fills_its_own_slots_and_never_takes_a_job_twice(make_app: Any) -> None:
    a, b = runtimes(make_app)
    for _ in range(10):
        a.store.create_job(new_job(duration_s=5), now=time.time())
    a.simulator.step(time.time())
    b.simulator.step(time.time())
    with a.db.engine.connect() as conn:
        owners = dict(conn.execute(select(jobs.c.id, jobs.c.owner)).all())
    running = [job_id for job_id, owner in owners.items() if owner is not None]
    assert list(owners.values()).count(a.instance_id) == a.settings.workers == 4
    assert list(owners.values()).count(b.instance_id) == 4
    assert len(running) == len(set(running)) == 8
    assert a.reads.count_in_state(State.QUEUED) == 2


def test_a_job_whose_instance_lost_its_lease_is_ended_by_another_once(make_app: Any) -> None:
    a, b = runtimes(make_app)
    now = time.time()
    job, _ = a.store.create_job(new_job(duration_s=1, callback_url=URL), now=now)
    a.simulator.step(now)  # a starts it; a's lease runs until now + lease_seconds
    lease_end = now + a.lease.lease_s
    b.simulator.step(now + 2)  # due, but a's lease holds: not b's to end
    assert b.reads.get_job(job.id).state is State.PROCESSING  # type: ignore[union-attr]
    b.simulator.step(lease_end + 1)  # a's lease has passed: b takes the job over
    ended = b.reads.get_job(job.id)
    assert ended is not None and ended.state is State.COMPLETED and ended.owner == a.instance_id
    assert a.store.finish_due(now=lease_end + 2, end=attempt_end) == []  # nothing left for a
    assert count(b, webhook_events, webhook_events.c.job_id == job.id) == 1


def test_a_cleanly_stopped_instance_hands_its_jobs_over_at_once(make_app: Any) -> None:
    a, b = runtimes(make_app)
    now = time.time()
    job, _ = a.store.create_job(new_job(duration_s=1), now=now)
    a.simulator.step(now)
    a.close()  # gives the lease up
    b.simulator.step(now + 1.5)
    assert b.reads.get_job(job.id).state is State.COMPLETED  # type: ignore[union-attr]


def test_channel_numbers_stay_gapless_when_instances_end_jobs_together(make_app: Any) -> None:
    a, b = runtimes(make_app, workers=30)
    now = time.time()
    for _ in range(60):
        a.store.create_job(new_job(duration_s=1, callback_url=URL), now=now, channel=True)
    a.simulator.step(now)
    b.simulator.step(now)
    later = now + 2
    threads = [
        threading.Thread(target=lambda r=r: r.store.finish_due(now=later, end=attempt_end, batch=7))
        for r in (a, b)
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # each finish_due ends at most a batch of 7: run until nothing is left
    while a.store.finish_due(now=later, end=attempt_end) or b.store.finish_due(
        now=later, end=attempt_end
    ):
        pass
    with a.db.engine.connect() as conn:
        numbers = sorted(conn.execute(select(channel_events.c.seq)).scalars())
    assert numbers == list(range(1, 61))
    assert count(a, webhook_events) == 60


def test_an_idempotency_key_holds_across_instances(make_app: Any) -> None:
    apps: list[Flask] = [make_app(), make_app()]
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tenant = apps[0].test_client().post("/v1/clients", json={"name": "i"}, headers=admin)
    headers = {"Authorization": f"Bearer {tenant.get_json()['api_key']}", "Idempotency-Key": "k1"}
    answers: list[tuple[int, str]] = []

    def create(app: Flask) -> None:
        resp = app.test_client().post("/v1/jobs", json={"priority": 1}, headers=headers)
        answers.append((resp.status_code, resp.get_json()["id"]))

    threads = [threading.Thread(target=create, args=(app,)) for app in apps * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(code for code, _ in answers) == [200] * 5 + [201]
    assert len({job_id for _, job_id in answers}) == 1
    assert count(apps[0].extensions["vt"], jobs) == 1


def test_the_rate_limit_is_shared_by_the_live_instances(make_app: Any) -> None:
    first: Flask = make_app(rate_limit=1, rate_burst=4)
    second: Flask = make_app(rate_limit=1, rate_burst=4)  # sees two live instances
    assert second.extensions["vt"].lease.live == 2
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    created = first.test_client().post("/v1/clients", json={"name": "r"}, headers=admin)
    headers = {"Authorization": f"Bearer {created.get_json()['api_key']}"}
    client = second.test_client()
    assert [client.get("/v1/jobs", headers=headers).status_code for _ in range(2)] == [200, 200]
    resp = client.get("/v1/jobs", headers=headers)  # half the burst of 4 is spent
    assert_problem(resp, 429, "rate_limited", "retry after")


def test_an_instance_is_woken_by_the_jobs_and_webhooks_of_another(make_app: Any) -> None:
    a, b = runtimes(make_app)
    heard: dict[str, int] = {"vt_jobs": 0, "vt_outbox": 0}

    def handler(channel: str) -> Any:
        return lambda: heard.__setitem__(channel, heard[channel] + 1)

    listener = Listener(
        b.settings.database_url,
        {name: handler(name) for name in heard},
        instance_id=b.instance_id,  # b's own writes are not news to it
    )
    listener.start()
    try:
        wait_until(listener.listening.is_set, timeout=10, message="LISTEN in force")
        heard.update(vt_jobs=0, vt_outbox=0)
        now = time.time()
        b.store.create_job(new_job(duration_s=0), now=now)  # ignored: b's own
        a.store.create_job(new_job(duration_s=0, callback_url=URL), now=now)
        wait_until(lambda: heard["vt_jobs"] >= 1, timeout=10, message="a's job heard")
        assert heard["vt_jobs"] == 1  # notifications arrive in commit order: b's was skipped
        a.simulator.step(now)
        a.simulator.step(now + 0.1)  # ends a's job: its outbox row notifies
        wait_until(lambda: heard["vt_outbox"] >= 1, timeout=10, message="a's webhook heard")
    finally:
        listener.stop()


def test_a_listener_whose_connection_is_cut_listens_again_and_catches_up(
    make_app: Any, database_url: str
) -> None:
    (a,) = runtimes(make_app, 1)
    woken = threading.Event()
    listener = Listener(database_url, {"vt_jobs": woken.set}, instance_id="srv_listener_test")
    listener.start()
    try:
        wait_until(listener.listening.is_set, timeout=10, message="LISTEN in force")
        woken.clear()
        cut = query(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            "srv_listener_test-listen",
        )
        assert cut == [(True,)]
        # every handler is called once on reconnecting: what was sent meanwhile is not lost
        wait_until(woken.is_set, timeout=15, message="the catch-up call after reconnecting")
        wait_until(listener.listening.is_set, timeout=10, message="LISTEN in force again")
        woken.clear()
        a.store.create_job(new_job(), now=time.time())
        wait_until(woken.is_set, timeout=10, message="a job heard on the new connection")
    finally:
        listener.stop()


def test_a_listener_that_cannot_connect_keeps_trying_and_stops_when_told(
    caplog: pytest.LogCaptureFixture, database_url: str
) -> None:
    nowhere = make_url(database_url).set(port=1).render_as_string(hide_password=False)
    listener = Listener(nowhere, {"vt_jobs": lambda: None}, instance_id="x")
    listener.start()
    wait_until(
        lambda: "listening for other instances failed" in caplog.text,
        timeout=15,
        message="the failure logged",
    )
    listener.stop()
    assert not listener.listening.is_set()


def test_a_delivery_leased_by_a_gone_instance_is_taken_over_when_its_lease_passes(
    make_app: Any,
) -> None:
    a, b = runtimes(make_app)
    now = time.time()
    job, _ = a.store.create_job(new_job(duration_s=0, callback_url=URL), now=now)
    a.simulator.step(now)
    a.simulator.step(now + 0.01)  # ended: its webhook is due
    taken = a.dispatcher.outbox.lease(now=now + 0.02, limit=10, lease_s=5.0)
    assert [e.job_id for e in taken] == [job.id]  # a is sending it, and then dies
    assert b.dispatcher.outbox.lease(now=now + 1, limit=10, lease_s=5.0) == []
    again = b.dispatcher.outbox.lease(now=now + 5.1, limit=10, lease_s=5.0)
    assert [e.id for e in again] == [taken[0].id]  # same webhook-id: receivers de-duplicate
