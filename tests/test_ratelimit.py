"""Global rate limits in PostgreSQL: slots 1/rate apart, throttled jobs deferred, not failed."""

from __future__ import annotations

import time

import pytest

from herald import ratelimit
from herald.ratelimit import RateLimiter, Throttled
from tests.helpers import ROUTES, make_settings, sql
from tests.services import ServiceUnavailable, require_service
from tests.services.smtp import SmtpServer
from tests.workers import Worker, orchestrate


def email_jobs(url):
    return sql(url, "SELECT * FROM herald.jobs WHERE actor = 'send_email' ORDER BY id")


def test_slots_are_one_over_the_rate_apart_and_a_far_slot_is_not_taken(herald_db, pool):
    slept: list[float] = []
    limiter = RateLimiter("smtp", 5, 1.0, sleep=slept.append)
    started = time.monotonic()
    for _ in range(5):
        limiter.acquire(pool)
    elapsed = time.monotonic() - started
    assert slept[0] == pytest.approx(0.2, abs=elapsed + 0.01)  # the first call took slot 0
    assert [round(b - a, 1) for a, b in zip(slept, slept[1:], strict=False)] == [0.2] * 3
    [before] = sql(herald_db, "SELECT next_slot FROM herald.rate_limits WHERE key = 'smtp'")
    limiter.acquire(pool)  # the slot a second away: still waited for in-process
    with pytest.raises(Throttled) as throttled:
        limiter.acquire(pool)  # more than a second away: not taken, deferred instead
    assert 1.0 <= throttled.value.retry_in <= 1.2 + elapsed
    [after] = sql(herald_db, "SELECT next_slot FROM herald.rate_limits WHERE key = 'smtp'")
    assert (after["next_slot"] - before["next_slot"]).total_seconds() == pytest.approx(0.2)


def test_an_unset_limit_is_unlimited(herald_db):
    assert ratelimit.limiter_for(make_settings(herald_db), "smtp") is None
    settings = make_settings(herald_db, {**ROUTES, "limits": {"ai_requests_per_minute": 30}})
    assert ratelimit.limiter_for(settings, "smtp") is None
    limiter = ratelimit.limiter_for(settings, "ai")
    assert limiter is not None and limiter.interval == 2.0


def test_throttled_emails_are_deferred_and_end_complete_with_one_attempt_each(
    herald_db, stub_pipeline, monkeypatch
):
    settings = make_settings(herald_db, {**ROUTES, "limits": {"emails_per_second": 10}})
    stub_pipeline.use(settings=settings)
    monkeypatch.setattr(ratelimit, "MAX_WAIT_SECONDS", 0.05)  # defer rather than wait
    sql(herald_db, "INSERT INTO classes (title) SELECT 'c' || i FROM generate_series(1, 5) i")
    sql(herald_db, "UPDATE classes SET seats = 1")  # 10 emails
    stub_pipeline.orchestrate()
    jobs = email_jobs(herald_db)
    assert {(j["status"], j["attempts"]) for j in jobs} == {("complete", 1)}
    assert sum(j["deferrals"] for j in jobs) > 0
    assert len(stub_pipeline.mailer.sent) == 10


# -- for real: two `dramatiq actors` processes share emails_per_second = 5 --------------------


class TimedSmtpServer(SmtpServer):
    """Records when each message was accepted."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted_at: list[float] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if answer.startswith("250"):
            self.accepted_at.append(time.monotonic())
        return answer


@pytest.fixture
def smtp_server():
    server = TimedSmtpServer()
    try:
        server.start()
    except (OSError, RuntimeError, TimeoutError) as exc:
        require_service("SMTP", str(ServiceUnavailable(exc)))
    yield server
    server.stop()


LIMIT_TOML = """
[mail]
from = "Herald <herald@example.com>"

[limits]
emails_per_second = 5

[[routes]]
name = "classes"
table = "classes"
operations = ["UPDATE"]
recipients = ["a@example.com", "b@example.com"]
"""


def most_in_one_second(times: list[float]) -> tuple[int, int]:
    """(most in any 1 s window starting at an email, most in 1 s windows from the first)."""
    times = sorted(times)
    sliding = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    aligned: dict[int, int] = {}
    for t in times:
        second = int(t - times[0])
        aligned[second] = aligned.get(second, 0) + 1
    return sliding, max(aligned.values())


@pytest.mark.integration
def test_two_workers_together_send_at_most_emails_per_second(
    herald_env, herald_db, smtp_server, tmp_path
):
    config = tmp_path / "limits.toml"
    config.write_text(LIMIT_TOML)
    env = {**herald_env, "HERALD_CONFIG": str(config)}
    sql(herald_db, "INSERT INTO classes (title) SELECT 'c' || i FROM generate_series(1, 15) i")
    sql(herald_db, "UPDATE classes SET seats = 1")  # 30 emails
    orchestrate(env)  # published before the workers start: both find a backlog at once
    workers = [Worker(env, tmp_path / f"worker{i}.log", threads=4) for i in range(2)]
    try:
        smtp_server.wait_for(30, timeout=60)
        time.sleep(0.5)
    finally:
        for worker in workers:
            worker.stop()
    sliding, aligned = most_in_one_second(smtp_server.accepted_at)
    jobs = email_jobs(herald_db)
    span = max(smtp_server.accepted_at) - min(smtp_server.accepted_at)
    print(
        f"\nemails_per_second = 5, 2 workers: 30 emails in {span:.1f}s; most in any 1 s window "
        f"{sliding} (sliding), {aligned} (aligned); deferrals {sum(j['deferrals'] for j in jobs)}"
    )
    assert len({m.message_id for m in smtp_server.messages}) == 30
    assert sliding <= 5 + 1 and aligned <= 5 + 1
    assert {(j["status"], j["attempts"]) for j in jobs} == {("complete", 1)}
