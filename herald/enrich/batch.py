"""Enrich batches: several enrich jobs in one message, their AI calls in flight together.

A worker thread that waits for each AI call bounds the calls in flight by the worker's
threads, and each AI change then travelled alone to its email (issue 13). A batch
(`[ai] batch_size` enrich jobs of one priority, one `enrich_batch` message) is started
with one statement; each notification's changes are aliased on the worker thread, then
the calls are made together on the process's event loop (herald/enrich/loop.py), at most
`[ai] max_concurrency` at once per process, each through the same rate limit and breaker
as one job's call (`guarded_async`). One statement then hands off every job that has its
answer, and their email jobs are published together: they leave as email batches.

Each job keeps its own fate, decided as one job's attempt decides it
(herald/enrich/step.py `when_failed`, the max-delay rule included):

- a summary, or a reason to go without one (too late for its deadline, the circuit open
  for a send route, a refusal): handed off in the batch's one statement;
- a transient failure: pending, retried alone as an `enrich` message, its backoff capped
  by its deadline (a hold route's: retried as long as the AI fails);
- a deferral (the rate limit; the circuit open for a hold route): deferred alone;
- a hold route's permanent refusal, or a notification that is gone: failed with its reason;
- with the ai breaker not closed when the batch started, only its first job that needs a
  call is tried (it may be the probe), and the others are handed back to run alone, each
  reading the breaker as one job does;
- a call not started when the time budget is spent is not made: its job is handed back,
  to be published again as a batch, so no job stays 'running' near its time limit.

A batch that dies midway (the worker killed) is redelivered by RabbitMQ: jobs already
handed off are complete and skipped, the others start again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from psycopg_pool import ConnectionPool

from herald import batches, db, ledger
from herald.batches import BatchOutcome, Deferral
from herald.breaker import breaker_for, guarded_async
from herald.config import Settings
from herald.enrich.ai import Summary
from herald.enrich.deadline import SummaryDeadline
from herald.enrich.handoff import Summarised, hand_off_batch
from herald.enrich.loop import AILoop
from herald.enrich.step import (
    HeldForAI,
    Prompt,
    fold_success,
    prepare,
    summarised,
    when_failed,
)
from herald.errors import PermanentError, TransientError
from herald.ledger import JobContext, JobRef, describe
from herald.ratelimit import Postponed

logger = logging.getLogger(__name__)

#: The share of the enrich job's time limit a batch may spend starting calls; a call
#: started takes at most `[ai] timeout_seconds` per try on top.
BUDGET_SHARE = 0.5


@dataclass(frozen=True)
class HandedOff:
    job_id: int
    status: str  # ok | offline | unavailable | skipped
    seconds: float


@dataclass(frozen=True)
class Retry(batches.Retry):
    """A transient failure (herald/batches.py) with its email's deadline (None: a hold
    route), which caps the retry's backoff."""

    deadline: SummaryDeadline | None


@dataclass
class EnrichBatchReport(BatchOutcome):
    """What became of each job of an enrich batch (every started job is in one list)."""

    handed_off: list[HandedOff] = field(default_factory=list)
    retry: list[Retry] = field(default_factory=list)
    #: The email jobs the hand-off wrote, to publish together.
    email_jobs: list[JobRef] = field(default_factory=list)
    #: The model's summaries (their tokens are counted).
    summaries: list[Summary] = field(default_factory=list)

    @property
    def sent(self) -> list[HandedOff]:
        """The jobs completed, under the name `monitoring.prometheus.record_batch` reads."""
        return self.handed_off


@dataclass(frozen=True)
class Pending:
    """A job whose model is to be asked."""

    ctx: JobContext
    prompt: Prompt
    deadline: SummaryDeadline | None


@dataclass(frozen=True)
class Answer:
    """How one call went: a result, an exception, or not made (the time budget)."""

    result: Summarised | None = None
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def tried(self) -> bool:
        return self.result is not None or self.error is not None


def summarise_batch(
    pool: ConnectionPool,
    settings: Settings,
    ai: AILoop,
    job_ids: Sequence[int],
    *,
    budget_seconds: float,
    may_retry: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> EnrichBatchReport:
    """Start `job_ids` in one statement, ask the model for each together, hand off in one
    statement; see the module doc. `may_retry` is false when the enrich job has no
    retries (its `max_retries` is 0): every attempt is then its last."""
    report = EnrichBatchReport()
    with db.autocommit(pool) as conn:
        contexts, report.not_started = ledger.start_many(conn, job_ids)
    for job_id, status in report.not_started.items():
        logger.info("Skipping job %d of the batch: it is %s", job_id, status)
    budget_end = clock() + budget_seconds
    ready: list[tuple[JobContext, Summarised, float]] = []
    calls: list[Pending] = []
    for ctx in contexts:
        if ctx.notification is None:
            _fail(pool, report, ctx, f"notification {ctx.job['notification_id']} does not exist")
        elif ctx.summary and ctx.summary["status"] in ("ok", "offline"):
            ready.append((ctx, Summarised("skipped"), 0.0))  # an earlier attempt summarised
        else:
            deadline = SummaryDeadline.of(ctx.notification, settings)
            prompt = prepare(ctx, settings, deadline)
            if isinstance(prompt, Summarised):
                ready.append((ctx, prompt, 0.0))
            else:
                calls.append(Pending(ctx, prompt, deadline))
    if len(calls) > 1 and not _closed(settings, calls[0].ctx):
        rest, calls = calls[1:], calls[:1]
        _hand_back(pool, report, [p.ctx.job_id for p in rest], alone=True,
                   reason="handed back: the ai circuit is not closed")  # fmt: skip
    untried: list[int] = []
    for pending, answer in zip(calls, _ask(pool, settings, ai, calls, budget_end, clock),
                               strict=True):  # fmt: skip
        if not answer.tried:
            untried.append(pending.ctx.job_id)
            continue
        result = _settle(pool, report, pending, answer, may_retry)
        if result is not None:
            ready.append((pending.ctx, result, answer.seconds))
    if untried:
        _hand_back(pool, report, untried, alone=False,
                   reason="handed back: the batch's time budget was spent")  # fmt: skip
    _hand_off(pool, report, ready)
    return report


def _closed(settings: Settings, ctx: JobContext) -> bool:
    """The ai breaker as the batch's start read it: closed (or none configured)."""
    return breaker_for(settings, "ai") is None or ctx.breakers.get("ai", "closed") == "closed"


def _ask(
    pool: ConnectionPool,
    settings: Settings,
    ai: AILoop,
    calls: Sequence[Pending],
    budget_end: float,
    clock: Callable[[], float],
) -> list[Answer]:
    """Every call on the event loop at once; the worker thread waits for them all."""
    if not calls:
        return []

    async def every() -> list[Answer]:
        return list(await asyncio.gather(
            *(_call(pool, settings, ai, p, budget_end, clock) for p in calls)
        ))  # fmt: skip

    # Calls start by the budget's end and each ends within its client timeout.
    timeout = max(budget_end - clock(), 0.0) + settings.ai.call_seconds + 5.0
    try:
        return ai.run(every(), timeout)
    except TimeoutError as exc:
        return [Answer(error=TransientError(str(exc)))] * len(calls)


async def _call(
    pool: ConnectionPool,
    settings: Settings,
    ai: AILoop,
    pending: Pending,
    budget_end: float,
    clock: Callable[[], float],
) -> Answer:
    """One call, as `step.summarise` makes it, once a slot of the process's is free (and
    none, handed back, when no slot is free before the time budget's end)."""
    if not await _slot(ai.slots, budget_end - clock()):
        return Answer()
    try:
        if clock() > budget_end:
            return Answer()  # not made: handed back
        deadline = pending.deadline
        if deadline is not None and not deadline.allows_call():  # waited too long for a slot
            return Answer(Summarised("unavailable", error=deadline.describe()))
        started = time.perf_counter()
        state = pending.ctx.breakers.get("ai", "closed")
        try:
            async with guarded_async(pool, settings, "ai", known_state=state) as call:
                with call.made():
                    summary = await ai.summariser.summarise(pending.prompt.data)
                fold = fold_success(call)
            return Answer(summarised(summary, pending.prompt, fold), None, _since(started))
        except Exception as exc:  # noqa: BLE001 - settled on the worker thread
            return Answer(None, exc, _since(started))
    finally:
        ai.slots.release()


async def _slot(slots: asyncio.Semaphore, within: float) -> bool:
    """Take one of the process's call slots, waiting at most `within` seconds."""
    if within <= 0:
        return False
    if not slots.locked():
        await slots.acquire()  # free: no timer
        return True
    try:
        async with asyncio.timeout(within):  # a timer; wait_for adds a task per call
            await slots.acquire()
    except TimeoutError:
        return False
    return True


def _since(started: float) -> float:
    return time.perf_counter() - started


def _settle(
    pool: ConnectionPool,
    report: EnrichBatchReport,
    pending: Pending,
    answer: Answer,
    may_retry: bool,
) -> Summarised | None:
    """What a call's answer makes of its job: a result to hand off, or (None) a deferral,
    a retry alone or a failure, recorded in the ledger and the report."""
    if answer.result is not None:
        return answer.result
    exc = answer.error
    assert exc is not None
    ctx, deadline = pending.ctx, pending.deadline
    try:
        if isinstance(exc, Postponed | TransientError | PermanentError):
            return when_failed(exc, deadline, final_attempt=not may_retry)
        raise exc
    except Postponed as postponed:
        reason = f"deferred: {postponed.reason}; next try in about {postponed.retry_in:.1f}s"
        with db.autocommit(pool) as conn:
            ledger.deferred(conn, ctx.job_id, reason)
        report.deferred.append(Deferral(ctx.ref, postponed))
    except PermanentError as failure:
        _fail(pool, report, ctx, describe(failure))
    except Exception as failure:  # noqa: BLE001 - transient or unexpected: alone, later
        reason = describe(failure)
        if not (may_retry or isinstance(failure, HeldForAI)):
            _fail(pool, report, ctx, reason)  # no retries configured: failed
            return None
        with db.autocommit(pool) as conn:
            ledger.will_retry(conn, ctx.job_id, reason)
        logger.warning("Enrich job %d will be retried alone: %s", ctx.job_id, reason)
        report.retry.append(Retry(ctx.ref, reason, answer.seconds, deadline))
    return None


def _fail(pool: ConnectionPool, report: EnrichBatchReport, ctx: JobContext, reason: str) -> None:
    with db.autocommit(pool) as conn:
        ledger.fail(conn, ctx.job_id, reason)
    logger.warning("Enrich job %d failed for good: %s", ctx.job_id, reason)
    report.failed.append((ctx.job_id, reason))


def _hand_back(
    pool: ConnectionPool,
    report: EnrichBatchReport,
    job_ids: list[int],
    *,
    alone: bool,
    reason: str,
) -> None:
    if not job_ids:
        return
    with db.autocommit(pool) as conn:
        report.handed_back += ledger.hand_back(conn, job_ids, reason)
    report.hand_back_alone = report.hand_back_alone or alone


def _hand_off(
    pool: ConnectionPool,
    report: EnrichBatchReport,
    ready: Sequence[tuple[JobContext, Summarised, float]],
) -> None:
    if not ready:
        return
    for ctx, result, _ in ready:
        if result.error:
            assert ctx.notification is not None
            logger.warning("Notification %d goes out without a summary: %s",
                           ctx.notification["id"], result.error)  # fmt: skip
    completed, report.email_jobs = hand_off_batch(pool, [(c, r) for c, r, _ in ready])
    for ctx, result, seconds in ready:
        if ctx.job_id in completed:
            report.handed_off.append(HandedOff(ctx.job_id, result.status, seconds))
            if result.summary is not None:
                report.summaries.append(result.summary)
