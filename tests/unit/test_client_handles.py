"""Job handles in virtual time: result, done, status, callbacks, continuation tokens."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from client_lib import JobFailed, JobStatus, TranslationClient, WaitTimeout
from client_lib.errors import ConfigurationError
from tests.fakes import RECEIVER, SERVER, FakeClock, FakeServices


def make_client(services: FakeServices, tmp_path: Any, base_url: str = SERVER) -> Any:
    return TranslationClient(
        base_url=base_url,
        receiver_url=RECEIVER,
        api_key="vt_test",
        credentials_file=str(tmp_path / "none.json"),
        transport=services,
        clock=services.clock,
        seed=1,
    )


@pytest.fixture
def services() -> FakeServices:
    return FakeServices(FakeClock())


def test_a_handle_waits_and_answers_without_requests(services: FakeServices, tmp_path: Any) -> None:
    client = make_client(services, tmp_path)
    handle = client.submit(simulate={"duration_s": 5.0})
    assert handle.status() is JobStatus.PENDING and not handle.done()
    assert handle.result(timeout=30).status is JobStatus.COMPLETED
    assert handle.done() and handle.status() is JobStatus.COMPLETED
    assert services.requests["status"] == 0 and repr(handle).endswith("completed>")


def test_result_raises_as_wait_does(services: FakeServices, tmp_path: Any) -> None:
    client = make_client(services, tmp_path)
    failed = client.submit(simulate={"duration_s": 1.0, "outcome": "error"})
    with pytest.raises(JobFailed):
        failed.result(timeout=30)
    slow = client.submit(simulate={"duration_s": 100.0})
    with pytest.raises(TimeoutError) as info:  # WaitTimeout is a builtin TimeoutError too
        slow.result(timeout=2)
    assert isinstance(info.value, WaitTimeout)


def test_resuming_where_the_receiver_holds_the_end_costs_no_status_request(
    services: FakeServices, tmp_path: Any
) -> None:
    token = (
        make_client(services, tmp_path).submit(simulate={"duration_s": 2.0}).continuation_token()
    )
    services.clock.sleep(5)  # the job ended and its webhook is stored meanwhile
    other = make_client(services, tmp_path)  # another process, the same services
    done = other.resume(token).result(timeout=30)
    assert done.status is JobStatus.COMPLETED and services.requests["status"] == 0
    assert other.detection(done.id).path == "webhook"  # type: ignore[union-attr]


def test_resuming_a_running_job_follows_it_to_its_end(
    services: FakeServices, tmp_path: Any
) -> None:
    token = (
        make_client(services, tmp_path).submit(simulate={"duration_s": 8.0}).continuation_token()
    )
    other = make_client(services, tmp_path)
    assert other.resume(token).result(timeout=30).status is JobStatus.COMPLETED
    assert services.requests["status"] == 1  # the first look, then the end by webhook


def test_a_token_is_for_its_own_server(services: FakeServices, tmp_path: Any) -> None:
    token = (
        make_client(services, tmp_path).submit(simulate={"duration_s": 1.0}).continuation_token()
    )
    with pytest.raises(ConfigurationError, match="not for http://elsewhere"):
        make_client(services, tmp_path, base_url="http://elsewhere").resume(token)
    with pytest.raises(ConfigurationError, match="not a continuation token"):
        make_client(services, tmp_path).resume("garbage!")


def test_done_callbacks_run_once_the_job_ended(services: FakeServices, tmp_path: Any) -> None:
    client = make_client(services, tmp_path)
    handle = client.submit(simulate={"duration_s": 3.0})
    called = threading.Event()
    seen: list[Any] = []
    handle.add_done_callback(lambda h: (seen.append(h.result()), called.set()))
    assert called.wait(10)
    assert seen[0].status is JobStatus.COMPLETED
    later = threading.Event()
    handle.add_done_callback(lambda h: later.set())  # already done: called at once
    assert later.wait(10)
