"""GET /api/jobs and one job; retry, cancel and bulk retry, on real PostgreSQL and RabbitMQ."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api_fixtures import AS_VIEWER, Api, api, seeded  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def ids(response) -> list[int]:
    assert response.status_code == 200, response.text
    return [j["id"] for j in response.json()["jobs"]]


def test_the_list_is_newest_first_with_counts_per_status(api: Api, seeded) -> None:
    body = api.get("/api/jobs").json()
    everything = seeded["enrich"] + seeded["email"]
    assert [j["id"] for j in body["jobs"]] == sorted(everything, reverse=True)
    assert body["counts"] == {"pending": 3, "running": 1, "complete": 1, "failed": 1,
                              "canceled": 0, "superseded": 0}  # fmt: skip
    assert body["counts_estimated"] is False and body["next"] is None
    first = body["jobs"][-1]
    assert (first["actor"], first["route"], first["table_name"]) == (
        "enrich", "new-members", "public.members")  # fmt: skip


@pytest.mark.parametrize(
    ("query", "expect"),
    [
        ("status=failed", "failed"),
        ("status=running", "running"),
        ("actor=enrich", "enrich"),
        ("queue=email", "email"),
        ("route=classes", "email"),
        ("route=new-members", "enrich"),
        ("table=classes", "email"),
        ("table=public.members", "enrich"),
        ("q=mailbox%20UNAVAILABLE", "failed"),
    ],
)
def test_each_filter_narrows_the_list(api: Api, seeded, query: str, expect: str) -> None:
    assert sorted(ids(api.get(f"/api/jobs?{query}"))) == sorted(seeded[expect])


def test_recipient_change_and_time_filters(api: Api, seeded) -> None:
    a = api.sql("SELECT id, change_id FROM herald.jobs WHERE recipient = 'a@example.com'")
    assert sorted(ids(api.get("/api/jobs?recipient=a@example.com"))) == sorted(r["id"] for r in a)
    change = a[0]["change_id"]
    same_change = api.sql("SELECT id FROM herald.jobs WHERE change_id = %s", (change,))
    assert sorted(ids(api.get(f"/api/jobs?change_id={change}"))) == sorted(
        r["id"] for r in same_change)  # fmt: skip
    api.sql("UPDATE herald.jobs SET created_at = '2020-01-01T00:00:00Z' WHERE id = %s",
            (seeded["enrich"][0],))  # fmt: skip
    assert ids(api.get("/api/jobs?created_before=2021-01-01T00:00:00Z")) == [seeded["enrich"][0]]
    newer = ids(api.get("/api/jobs?created_after=2021-01-01T00:00:00"))  # no zone: UTC
    assert seeded["enrich"][0] not in newer and len(newer) == 5


def test_free_text_is_literal_not_a_pattern(api: Api, seeded) -> None:
    assert ids(api.get("/api/jobs?q=%25")) == []  # a literal % matches no error or address
    assert ids(api.get("/api/jobs?q=_")) == []
    body = api.get("/api/jobs?q=550").json()
    assert body["q_scope"] == "the newest 50,000 jobs"


@pytest.mark.parametrize("sort", ["id", "created_at"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_keyset_pages_walk_every_job_once(api: Api, seeded, sort: str, order: str) -> None:
    api.sql("UPDATE herald.jobs SET created_at = '2026-01-01T00:00:00Z'")  # all tied on time
    seen, cursor = [], None
    for _ in range(10):
        query = f"/api/jobs?limit=2&sort={sort}&order={order}" + (
            f"&cursor={cursor}" if cursor else ""
        )
        body = api.get(query).json()
        seen += [j["id"] for j in body["jobs"]]
        cursor = body["next"]
        if cursor is None:
            break
    everything = sorted(seeded["enrich"] + seeded["email"], reverse=order == "desc")
    assert seen == everything


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("limit=0", 422), ("limit=501", 422), ("status=lost", 422), ("sort=name", 422),
        ("order=up", 422), ("change_id=0", 422), ("change_id=99999999999999999999", 422),
        ("created_after=yesterday", 422), ("actor=%00", 422), (f"q={'x' * 201}", 422),
        ("cursor=not-a-cursor", 400),
    ],
)  # fmt: skip
def test_bad_list_parameters_are_4xx_problems(api: Api, query: str, status: int) -> None:
    response = api.get(f"/api/jobs?{query}")
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert {"type", "title", "status", "detail"} <= problem.keys() and problem["status"] == status


def test_a_cursor_of_one_sort_is_refused_for_another(api: Api, seeded) -> None:
    cursor = api.get("/api/jobs?limit=1").json()["next"]
    assert api.get(f"/api/jobs?limit=1&sort=created_at&cursor={cursor}").status_code == 400


def test_one_job_has_timings_notification_summary_and_delivery(api: Api, seeded) -> None:
    job_id = seeded["complete"][0]
    job = api.job(job_id)
    api.sql(
        "INSERT INTO herald.summaries (notification_id, status, summary, model, aliases, "
        "prompt_tokens, completion_tokens) VALUES (%s, 'ok', 'Member [PERSON_1] joined', "
        "'test-model', '{\"[PERSON_1]\": \"Ann Smith\"}', 120, 30)",
        (job["notification_id"],),
    )
    api.sql(
        "INSERT INTO herald.deliveries (notification_id, recipient, message_id_header, status, "
        "attempts, sent_at) VALUES (%s, %s, '<n1.abc@example.com>', 'sent', 1, now())",
        (job["notification_id"], job["recipient"]),
    )
    response = api.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["job"]["status"] == "complete"
    assert 1900 < body["job"]["processing_ms"] < 2100
    assert body["notification"]["route"] == "classes"
    assert body["summary"]["summary"] == "Member [PERSON_1] joined"
    assert (body["summary"]["prompt_tokens"], body["summary"]["completion_tokens"]) == (120, 30)
    assert "Ann Smith" not in response.text and "aliases" not in response.text
    assert body["delivery"]["message_id_header"] == "<n1.abc@example.com>"
    assert body["delivery"]["status"] == "sent"


def test_an_unknown_job_is_a_404_problem(api: Api) -> None:
    response = api.get("/api/jobs/424242")
    assert response.status_code == 404
    assert response.json()["detail"] == "no job 424242 in the ledger"
    assert api.get("/api/jobs/abc").status_code == 404  # not a job's address


def test_retrying_a_failed_job_publishes_it_again(api: Api, seeded) -> None:
    job_id = seeded["failed"][0]
    response = api.post(f"/api/jobs/{job_id}/retry")
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/api/jobs/{job_id}"
    assert response.json() == {"job_id": job_id, "status": "pending", "published": True}
    job = api.job(job_id)
    assert job["status"] == "pending" and job["published_at"] is not None
    follow = api.get(response.headers["location"]).json()
    assert follow["job"]["status"] == "pending"
    queues = {
        c["componentId"]: c for c in api.get("/health").json()["checks"]["rabbitmq:messagesReady"]
    }
    assert queues["email"]["observedValue"] >= 1  # the message is in RabbitMQ


@pytest.mark.parametrize("which", ["complete", "running", "pending"])
def test_retrying_a_job_that_did_not_fail_is_a_409(api: Api, seeded, which: str) -> None:
    job_id = seeded[which][0]
    response = api.post(f"/api/jobs/{job_id}/retry")
    assert response.status_code == 409
    assert f"job {job_id} is {which}" in response.json()["detail"]
    assert api.job(job_id)["status"] == which


def test_canceling_a_pending_job(api: Api, seeded) -> None:
    job_id = seeded["pending"][0]
    response = api.delete(f"/api/jobs/{job_id}")
    assert response.status_code == 200, response.text
    assert response.json() == {"job_id": job_id, "status": "canceled", "previous_status": "pending"}
    assert api.job(job_id)["status"] == "canceled"
    assert api.post(f"/api/jobs/{job_id}/retry").status_code == 202  # canceled can be retried


@pytest.mark.parametrize("which", ["running", "complete", "failed"])
def test_canceling_a_job_that_is_not_pending_is_a_409_with_the_reason(
    api: Api, seeded, which: str
) -> None:
    job_id = seeded[which][0]
    response = api.delete(f"/api/jobs/{job_id}")
    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"job {job_id}")
    assert api.job(job_id)["status"] == which
    assert api.delete("/api/jobs/424242").status_code == 404


def test_bulk_retry_takes_the_filters_and_needs_a_status(api: Api, seeded) -> None:
    assert api.post("/api/jobs/retry").status_code == 422
    assert api.post("/api/jobs/retry?status=complete").status_code == 422
    api.sql("UPDATE herald.jobs SET status = 'failed', last_error = 'boom' WHERE id = ANY(%s)",
            (seeded["enrich"],))  # fmt: skip
    response = api.post("/api/jobs/retry?status=failed&actor=enrich")
    assert response.status_code == 202, response.text
    assert response.json() == {"retried": 2, "published": 2, "skipped": [], "more": False}
    location = urlsplit(response.headers["location"])
    assert location.path == "/api/jobs"
    assert parse_qs(location.query) == {"status": ["pending"], "actor": ["enrich"]}
    assert sorted(ids(api.get(response.headers["location"]))) == sorted(seeded["enrich"])
    assert api.job(seeded["failed"][0])["status"] == "failed"  # the email job did not match


def test_the_metrics_count_requests_by_route_template(api: Api, seeded) -> None:
    api.get(f"/api/jobs/{seeded['failed'][0]}")
    api.get("/no/such/page", token=AS_VIEWER)
    text = api.client.get("/metrics").text
    assert (
        'herald_http_requests_total{method="GET",route="/api/jobs/{job_id}",status="2xx"} 1.0'
        in text
    )
    assert 'herald_http_requests_total{method="GET",route="unmatched",status="4xx"} 1.0' in text
    assert (
        'herald_http_request_duration_seconds_count{method="GET",route="/api/jobs/{job_id}"}'
        in text
    )
    assert 'route="/api/stats",status="5xx"} 0.0' in text  # every series from the first scrape


def test_a_rare_route_finds_the_same_jobs_through_its_notifications(api: Api, pool) -> None:
    from orchestrator.orchestrate import run_orchestrator
    from tests.helpers import RecordingPublisher, make_settings

    api.sql("INSERT INTO members (first_name) VALUES ('Ann'), ('Bob'), ('Cy')")
    api.sql("INSERT INTO classes (title) VALUES ('Yoga'), ('Judo')")
    for seats in range(40):
        api.sql("UPDATE classes SET seats = %s", (seats,))
    run_orchestrator(pool, make_settings(api.url), RecordingPublisher())
    api.sql("ANALYZE herald.notifications")  # the planner's statistics say new-members is rare
    share = api.sql("SELECT f.freq FROM pg_stats s, unnest(s.most_common_vals::text::text[], "
                    "s.most_common_freqs) f(val, freq) WHERE s.tablename = 'notifications' "
                    "AND s.attname = 'route' AND f.val = 'new-members'")  # fmt: skip
    assert share and share[0]["freq"] < 0.05
    expected = api.sql("SELECT j.id FROM herald.jobs j JOIN herald.notifications n "
                       "ON n.id = j.notification_id WHERE n.route = 'new-members'")  # fmt: skip
    assert ids(api.get("/api/jobs?route=new-members")) == sorted(
        (r["id"] for r in expected), reverse=True
    )
    assert len(expected) == 3
    assert len(ids(api.get("/api/jobs?route=classes&limit=500"))) == 160
