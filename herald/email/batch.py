"""Email batches: several email jobs carried by one message, each still a job of its own.

One message per email spends a RabbitMQ delivery and acknowledgement, a ledger statement
and the worker's per-message overhead on every email; at a few milliseconds of CPU an
email, that was most of it (README, Performance). A batch (`[mail] batch_size` jobs of one
priority, published as one `send_emails` message) is started with one statement, then
each job is sent exactly as a lone one is (`deliver.send_notification_email`: its delivery
row, its advisory lock, the same Message-ID), in order, on one pooled SMTP connection.

Each job still fails and retries on its own:

- a permanent error fails that job with its reason; the batch goes on;
- a transient error (or anything unexpected) leaves the job pending with its reason, to
  be retried alone with its backoff, and the jobs after it are handed back untried, to
  run alone: a failing server is then met by the careful one-job path, which reads the
  circuit breaker before every send;
- a deferral (circuit open, rate limit) defers that job and hands the rest back alike;
- past the time budget the jobs not yet tried are handed back, to be published again as
  a batch, so no job stays 'running' near its time limit.

A batch that dies midway (the worker killed) is redelivered by RabbitMQ: jobs already
complete are skipped, the one being sent is resent as `ambiguous`, exactly as for one job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from psycopg_pool import ConnectionPool

from herald import db, ledger
from herald.batches import BatchOutcome, Deferral, Retry
from herald.config import Settings
from herald.email.deliver import DeliveryOutcome, send_notification_email
from herald.email.mailer import Mailer
from herald.errors import PermanentError
from herald.ledger import describe
from herald.ratelimit import Postponed

logger = logging.getLogger(__name__)

#: The share of the email job's time limit a batch may spend before it hands back the jobs
#: it has not tried: a job never stays 'running' long enough to look stale to the sweeper.
BUDGET_SHARE = 0.5


@dataclass(frozen=True)
class Sent:
    job_id: int
    outcome: DeliveryOutcome
    seconds: float


@dataclass
class BatchReport(BatchOutcome):
    """What became of each job of an email batch (every started job is in one list)."""

    sent: list[Sent] = field(default_factory=list)
    retry: list[Retry] = field(default_factory=list)


def send_batch(
    pool: ConnectionPool,
    settings: Settings,
    mailer: Mailer,
    job_ids: Sequence[int],
    *,
    budget_seconds: float,
    may_retry: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> BatchReport:
    """Start `job_ids` in one statement and send each job's email; see the module doc.

    `may_retry` is false when the email job has no retries (its `max_retries` is 0): a
    transient failure then fails the job, as Retries would.
    """
    report = BatchReport()
    # One connection for the batch's own statements (the start, each email's claim and
    # sent): a checkout per email was a tenth of an email's CPU. The rare outcomes below
    # (failed, retry, deferred, handed back) check out their own, so a connection that
    # broke under a send is not reused for them.
    with db.autocommit(pool) as conn:
        _send_all(pool, settings, mailer, conn, job_ids, report, budget_seconds=budget_seconds,
                  may_retry=may_retry, clock=clock)  # fmt: skip
    return report


def _send_all(
    pool: ConnectionPool,
    settings: Settings,
    mailer: Mailer,
    conn: db.DictConnection,
    job_ids: Sequence[int],
    report: BatchReport,
    *,
    budget_seconds: float,
    may_retry: bool,
    clock: Callable[[], float],
) -> None:
    contexts, report.not_started = ledger.start_many(conn, job_ids)
    for job_id, status in report.not_started.items():
        logger.info("Skipping job %d of the batch: it is %s", job_id, status)
    deadline = clock() + budget_seconds
    for index, ctx in enumerate(contexts):
        rest = [c.job_id for c in contexts[index + 1 :]]
        if clock() > deadline:
            _hand_back(pool, report, [ctx.job_id, *rest], alone=False,
                       reason="handed back: the batch's time budget was spent")  # fmt: skip
            break
        started = time.perf_counter()
        try:
            outcome = send_notification_email(ctx, pool, settings, mailer, conn=conn)
        except Postponed as exc:
            deferred = f"deferred: {exc.reason}; next try in about {exc.retry_in:.1f}s"
            with db.autocommit(pool) as own:
                ledger.deferred(own, ctx.job_id, deferred)
            report.deferred.append(Deferral(ctx.ref, exc))
            reason = f"handed back: {exc.reason} for an earlier job of its batch"
            _hand_back(pool, report, rest, alone=True, reason=reason)
            break
        except PermanentError as exc:
            reason = describe(exc)
            with db.autocommit(pool) as own:
                ledger.fail(own, ctx.job_id, reason)
            logger.warning("Job %d failed for good: %s", ctx.job_id, reason)
            report.failed.append((ctx.job_id, reason))
        except Exception as exc:  # transient or unexpected: this job retries on its own
            reason = describe(exc)
            if not may_retry:  # no retries configured: failed
                with db.autocommit(pool) as own:
                    ledger.fail(own, ctx.job_id, reason)
                report.failed.append((ctx.job_id, reason))
            else:
                with db.autocommit(pool) as own:
                    ledger.will_retry(own, ctx.job_id, reason)
                logger.warning("Job %d will be retried alone: %s", ctx.job_id, reason)
                report.retry.append(Retry(ctx.ref, reason, time.perf_counter() - started))
            _hand_back(pool, report, rest, alone=True,
                       reason="handed back: an earlier job of its batch failed")  # fmt: skip
            break
        else:
            if not outcome.completed:
                with db.autocommit(pool) as own:
                    ledger.complete(own, ctx.job_id)
            report.sent.append(Sent(ctx.job_id, outcome, time.perf_counter() - started))


def _hand_back(
    pool: ConnectionPool, report: BatchReport, job_ids: list[int], *, alone: bool, reason: str
) -> None:
    if not job_ids:
        return
    with db.autocommit(pool) as conn:
        report.handed_back = ledger.hand_back(conn, job_ids, reason)
    report.hand_back_alone = alone
