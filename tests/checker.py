"""A Jepsen-style checker for Herald's fault tests: what was expected, what arrived, and how.

The expected set comes from the database: every change a route sends (outcome `routed`,
or never claimed but matching a route with recipients) times its recipients. What
arrived comes from the SMTP server's log. Each expected (change, recipient) email is:

- ok: received exactly once, with its own Message-ID (the one Herald derives from the
  notification and the recipient, the same on every attempt);
- lost: never received;
- duplicated: received more than once with that same Message-ID (allowed only where the
  ledger flagged the delivery `ambiguous`: a worker died between the server's 250 and the
  commit, DESIGN.md "Guarantees").

Every received email whose Message-ID is not an expected one is **unexpected**: a Message-ID
no delivery has, a second notification (hence a NEW Message-ID) for the same change and
recipient, or an expected Message-ID at the wrong recipient.

It also counts failed ledger jobs, ambiguous deliveries, changes in more than one
notification (claimed twice), and the orchestrator batches (`batch_intervals`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr

import psycopg
from psycopg.rows import dict_row

from herald.changes import Change
from herald.config import Settings
from herald.db import DictConnection
from herald.email.mime import message_id_for
from orchestrator.routing import route


@dataclass(frozen=True)
class Batch:
    """One orchestrator batch, named by its transaction id (the claimed rows' xmin).

    `start`..`end` spans what the transaction recorded (first claim to last notification
    written): inside the real transaction, which holds the orchestrator lock throughout.
    """

    xid: int
    start: datetime
    end: datetime
    changes: int


@dataclass
class Report:
    changes: int  # changes a route sends
    expected: int  # (change, recipient) emails expected
    ok: int = 0
    lost: int = 0
    duplicated: int = 0  # expected emails received more than once (same Message-ID)
    extra_copies: int = 0  # how many copies beyond the first, over all duplicated
    unexpected: int = 0  # received emails that match no expected (change, recipient)
    ambiguous: int = 0  # deliveries the ledger flagged ambiguous
    failed: int = 0  # ledger jobs that ended failed
    open_jobs: int = 0  # ledger jobs still pending or running
    claimed_twice: int = 0  # changes listed by more than one notification
    batches: int = 0
    overlapping_batches: int = 0
    received: int = 0  # emails the SMTP server accepted
    elapsed: float = 0.0
    lost_keys: list[tuple[int, str]] = field(default_factory=list, repr=False)
    unexpected_ids: list[str | None] = field(default_factory=list, repr=False)

    def __str__(self) -> str:
        return (
            f"changes={self.changes} emails={self.expected} ok={self.ok} lost={self.lost} "
            f"duplicated={self.duplicated} unexpected={self.unexpected} "
            f"ambiguous={self.ambiguous} failed={self.failed} open={self.open_jobs} "
            f"claimed_twice={self.claimed_twice} batches={self.batches} "
            f"overlapping={self.overlapping_batches} received={self.received} "
            f"elapsed={self.elapsed:.1f}s"
        )


def _address(recipient: str) -> str:
    return parseaddr(recipient)[1].lower()


def batch_intervals(conn: DictConnection) -> list[Batch]:
    """Every orchestrator batch, from the change-log rows it claimed and the notifications it
    wrote (both carry the batch transaction's id as xmin: claim, outcome and notifications
    are written in that one transaction and never updated after)."""
    rows = conn.execute(
        """
        WITH claims AS (
            SELECT xmin::text::bigint AS xid, min(claimed_at) AS start, max(claimed_at) AS stop,
                   count(*) AS n
              FROM herald.change_log WHERE claimed_at IS NOT NULL GROUP BY 1),
        written AS (
            SELECT xmin::text::bigint AS xid, max(created_at) AS stop
              FROM herald.notifications GROUP BY 1)
        SELECT c.xid, c.start, greatest(c.stop, w.stop) AS stop, c.n
          FROM claims c LEFT JOIN written w USING (xid)
         ORDER BY c.start
        """
    ).fetchall()
    return [Batch(r["xid"], r["start"], r["stop"], r["n"]) for r in rows]


def overlapping(batches: Sequence[Batch]) -> int:
    """How many batches start before an earlier-starting batch has ended."""
    count, latest_end = 0, None
    for b in sorted(batches, key=lambda b: b.start):
        if latest_end is not None and b.start < latest_end:
            count += 1
        latest_end = b.end if latest_end is None else max(latest_end, b.end)
    return count


def check(
    database_url: str,
    received: Iterable[object],
    settings: Settings,
    *,
    elapsed: float = 0.0,
) -> Report:
    """Count ok / lost / duplicated / unexpected from the database and the SMTP log.

    `received` holds the SMTP server's messages (`message_id` and `rcpt_tos` are read).
    `settings` gives the routes (recipients of changes never claimed) and the mail domain.
    """
    emails = list(received)
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        changes = conn.execute(
            "SELECT id, table_name, operation, row_pk, old_row, new_row, changed_at, outcome "
            "FROM herald.change_log ORDER BY id"
        ).fetchall()
        notifications = conn.execute(
            "SELECT id, change_ids, recipients FROM herald.notifications ORDER BY id"
        ).fetchall()
        ledger = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'failed') AS failed,"
            " count(*) FILTER (WHERE status IN ('pending', 'running')) AS open"
            " FROM herald.jobs"
        ).fetchone()
        ambiguous = conn.execute(
            "SELECT count(*) AS n FROM herald.deliveries WHERE ambiguous"
        ).fetchone()
        assert ledger is not None and ambiguous is not None  # aggregates: one row each
        batches = batch_intervals(conn)

    by_change: dict[int, list[dict]] = defaultdict(list)
    for notification in notifications:
        for change_id in notification["change_ids"]:
            by_change[change_id].append(notification)

    # (change id, recipient address) -> the Message-ID its email must carry (None: no
    # notification was ever written for it, so whatever arrives cannot be it).
    expected: dict[tuple[int, str], str | None] = {}
    claimed_twice = 0
    for row in changes:
        notes = by_change.get(row["id"], [])
        if len(notes) > 1:
            claimed_twice += 1
        if notes:
            # A debounced row's latest notification lists every change so far.
            note = notes[-1]
            for recipient in note["recipients"]:
                expected[(row["id"], _address(recipient))] = message_id_for(
                    note["id"], recipient, settings.mail_domain
                )
        elif row["outcome"] in ("routed", None):
            chosen = route(Change.from_row(row), settings.routes)
            if chosen is not None:
                for recipient in chosen.recipients:
                    expected[(row["id"], _address(recipient))] = None

    keys_of: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for key, mid in expected.items():
        if mid is not None:
            keys_of[mid].append(key)
    copies: Counter[tuple[int, str]] = Counter()
    report = Report(
        changes=len({change_id for change_id, _ in expected}),
        expected=len(expected),
        ambiguous=ambiguous["n"],
        failed=ledger["failed"],
        open_jobs=ledger["open"],
        claimed_twice=claimed_twice,
        batches=len(batches),
        overlapping_batches=overlapping(batches),
        received=len(emails),
        elapsed=elapsed,
    )
    for message in emails:
        mid = getattr(message, "message_id", None)
        keys = keys_of.get(mid, []) if mid else []
        rcpts = {r.lower() for r in getattr(message, "rcpt_tos", [])}
        if not keys or keys[0][1] not in rcpts:
            report.unexpected += 1
            report.unexpected_ids.append(mid)
            continue
        # One email can report several changes (a debounced notification): count each.
        for key in keys:
            copies[key] += 1

    for key in expected:
        n = copies[key]
        if n == 0:
            report.lost += 1
            report.lost_keys.append(key)
        elif n == 1:
            report.ok += 1
        else:
            report.duplicated += 1
            report.extra_copies += n - 1
    return report
