"""The demo's sample application: a gym's members and classes, the routes that watch them,
and the changes it makes (about two thirds member INSERTs with personal data, a third
class UPDATEs, one DELETE that no route takes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from herald.cli.demo.errors import DemoError
from herald.db import connect

MEMBER_RECIPIENT = "membership@demo.invalid"
CLASS_RECIPIENTS = ("coach@demo.invalid", "front-desk@demo.invalid")

#: The demo's own configuration; a herald.toml is not read (environment variables are).
DEMO_CONFIG: dict[str, Any] = {
    "mail": {"from": "Herald Demo <herald@demo.invalid>"},
    "ai": {
        "enabled": True,
        "model": "gpt-4o-mini",
        "pii_fields": ["email", "phone", "first_name", "last_name"],
    },
    # Retry within a second or two: the defaults (seconds to minutes) suit production.
    "retries": {
        actor: {"min_backoff_ms": 200, "max_backoff_ms": 2_000}
        for actor in ("orchestrate", "enrich", "send_email", "sweep", "purge")
    },
    "routes": [
        {
            "name": "new-members",
            "table": "members",
            "operations": ["INSERT"],
            "recipients": [MEMBER_RECIPIENT],
            "ai": True,
            # A route's own subject (sandboxed Jinja2); the class route keeps the default.
            "subject": "New member: {{ row.first_name }} {{ row.last_name }}",
        },
        {
            "name": "class-changes",
            "table": "classes",
            "operations": ["UPDATE"],
            "recipients": list(CLASS_RECIPIENTS),
            "ai": False,
        },
    ],
}

#: Give up (and say so) rather than hang if the pipeline stalls.
TIMEOUT_SECONDS = 120.0
MAX_CHANGES = 1000

_FIRST = (
    "Ada",
    "Grace",
    "Alan",
    "Katherine",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Tim",
    "Radia",
    "Ken",
    "Margaret",
)
_LAST = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Johnson",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Berners-Lee",
    "Perlman",
    "Thompson",
    "Hamilton",
)
_CLASSES = (
    "Morning Yoga",
    "Spin Express",
    "Pilates Core",
    "HIIT Blast",
    "Boxing Basics",
    "Aqua Fit",
    "Zumba",
    "Kettlebells",
    "Stretch & Relax",
    "Trail Running",
)


@dataclass(frozen=True)
class Plan:
    """How many of each kind of change to make, and the emails they should produce."""

    inserts: int
    updates: int
    deletes: int

    @property
    def total(self) -> int:
        return self.inserts + self.updates + self.deletes

    @property
    def emails(self) -> int:
        return self.inserts + self.updates * len(CLASS_RECIPIENTS)


def plan_changes(n: int) -> Plan:
    """About two thirds member INSERTs, a third class UPDATEs, one skipped DELETE."""
    if not 1 <= n <= MAX_CHANGES:
        raise DemoError(f"--changes must be between 1 and {MAX_CHANGES}, not {n}")
    deletes = 1 if n >= 3 else 0
    updates = (n - deletes) // 3 if n >= 3 else n - 1
    return Plan(inserts=n - deletes - updates, updates=updates, deletes=deletes)


@dataclass
class Made:
    """What the sample application did, to compare with what Herald reports."""

    plan: Plan
    member_ids: list[int] = field(default_factory=list)
    class_ids: list[int] = field(default_factory=list)


def make_changes(url: str, plan: Plan) -> Made:
    """Create the sample tables, track them, and make the planned changes one commit each.

    The classes are seeded before tracking starts, so the seed is not part of the demo.
    """
    made = Made(plan)
    with connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE members (id serial PRIMARY KEY, first_name text NOT NULL,"
            " last_name text NOT NULL, email text NOT NULL, phone text,"
            " joined_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "CREATE TABLE classes (id serial PRIMARY KEY, title text NOT NULL,"
            " seats int NOT NULL, status text NOT NULL DEFAULT 'open')"
        )
        seeds = plan.updates + plan.deletes
        for i in range(seeds):
            title = _CLASSES[i % len(_CLASSES)] + (f" {i // len(_CLASSES) + 1}" if i >= 10 else "")
            conn.execute("INSERT INTO classes (title, seats) VALUES (%s, %s)", (title, 12 + i % 8))
        conn.execute("SELECT herald.track('members')")
        conn.execute("SELECT herald.track('classes')")

        for i in range(plan.inserts):
            first, last = _FIRST[i % len(_FIRST)], _LAST[(i * 5) % len(_LAST)]
            row = conn.execute(
                "INSERT INTO members (first_name, last_name, email, phone)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                (
                    first,
                    last,
                    f"{first}.{last}{i + 1}@example.com".lower(),
                    f"+44 20 7946 {i % 10000:04d}",
                ),
            ).fetchone()
            assert row is not None  # INSERT ... RETURNING of one row
            made.member_ids.append(row["id"])
        for i in range(1, plan.updates + 1):
            conn.execute(
                "UPDATE classes SET seats = seats - 3,"
                " status = CASE WHEN id %% 2 = 0 THEN 'full' ELSE 'few seats left' END"
                " WHERE id = %s",
                (i,),
            )
            made.class_ids.append(i)
        if plan.deletes:
            conn.execute("DELETE FROM classes WHERE id = %s", (seeds,))
    return made
