"""Scale-out on one machine with real nodes (issue 15): a three-node RabbitMQ cluster with
quorum queues, and a PostgreSQL primary with a streaming standby.

Each RabbitMQ fault runs the whole pipeline (changes -> orchestrator -> email) in quorum
mode, with workers in two groups whose HERALD_BROKER_URL lists the nodes in different
orders (group A starts at the node leading the `email` queue, group B at the others),
and faults that node mid-run: SIGKILL, SIGSTOP for 10 s, a graceful `stop_app` (plain,
and after `rabbitmq-upgrade drain`). Half the changes are written before the fault, half
in a trickle during it (ten chunks, 0.5 s apart), so new work has to get through the
fault too. The PostgreSQL test crashes the primary mid-run and promotes the standby;
Herald reaches it through a multi-host URL with `target_session_attrs=read-write`.
Counts come from tests/checker.py, printed as the fault suite prints them, with the
pause: the longest time after the fault during which no email arrived.

HERALD_CLUSTER_CHANGES sets the changes per RabbitMQ fault (2,000 by default).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dramatiq
import pytest

from actors.broker import MAX_PRIORITY
from actors.rabbitmq import rabbitmq_broker
from herald.config import settings_from_mapping
from herald.db import connect
from herald.ledger import QUEUES
from herald.migrate import upgrade
from tests.checker import Report
from tests.helpers import create_app_tables, sql
from tests.services import ServiceUnavailable, require_service, wait_until
from tests.services.postgres import fresh_database_name
from tests.services.postgres_replica import ReplicatedPostgres, start_replicated_postgres
from tests.services.rabbitmq import fresh_vhost_name
from tests.services.rabbitmq_cluster import ClusterNode, RabbitMQCluster, start_rabbitmq_cluster
from tests.test_faults import Harness, assert_clean, fault_toml, insert_classes
from tests.workers import Worker, herald_environment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = int(os.environ.get("HERALD_CLUSTER_CHANGES", "2000"))
PG_N = 1000  # the failover run: half before the promote, half after
FREEZE_SECONDS = 10.0


def quorum_toml() -> str:
    """The fault suite's configuration on quorum queues; node order as given (the groups)."""
    return fault_toml() + '\n[broker]\nqueue_type = "quorum"\nshuffle_nodes = false\n'


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitMQCluster]:
    try:
        started = start_rabbitmq_cluster()
    except ServiceUnavailable as exc:
        require_service("a three-node RabbitMQ cluster", str(exc))
    print(f"\n  three-node cluster up in {started.boot_seconds:.1f}s")  # type: ignore[attr-defined]
    yield started
    started.close()


@pytest.fixture
def vhost(cluster: RabbitMQCluster) -> Iterator[str]:
    name = fresh_vhost_name()
    cluster.add_vhost(name)
    yield name
    cluster.ensure_running()  # whatever a failed test left stopped, the next one needs it
    cluster.delete_vhost(name)


# -- measuring ---------------------------------------------------------------------------------


class Progress:
    """Samples how many emails arrived, every 50 ms, to find the pause after a fault."""

    def __init__(self, smtp) -> None:
        self.smtp = smtp
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), len(self.smtp.messages)))
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def timeline(self, t0: float, step: float = 1.0) -> str:
        """Emails received by each second after `t0` (what the pause hides)."""
        marks, next_mark = [], t0
        for t, count in self.samples:
            if t >= next_mark:
                marks.append(f"{t - t0:.0f}s:{count}")
                next_mark += step
        return " ".join(marks)

    def pause_after(self, t0: float) -> float:
        """The longest stretch after `t0`, until the last email, with no email arriving."""
        longest, last_rise, last_count = 0.0, t0, None
        for t, count in self.samples:
            if t < t0:
                last_count = count
                continue
            if last_count is not None and count > last_count:
                longest = max(longest, t - last_rise)
                last_rise = t
            last_count = count
        return longest


class LeaderWatch:
    """Polls which node leads `queue` (every 0.5 s, through nodes that answer)."""

    def __init__(self, cluster: RabbitMQCluster, vhost: str, queue: str) -> None:
        self.cluster, self.vhost, self.queue = cluster, vhost, queue
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(RuntimeError, OSError):
                leader = self.cluster.leader_of(self.vhost, self.queue)
                self.seen.append((time.monotonic(), leader.index + 1))
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def moved(self, t0: float, old: int) -> str:
        """When the leadership left node `old` after `t0`, and to which node."""
        for t, node in self.seen:
            if t >= t0 and node != old:
                return f"moved to node {node} after {t - t0:.1f}s"
        return f"stayed on node {old}"


def unflagged_duplicates(db: str, received) -> list[str]:
    """Message-IDs received more than once whose delivery the ledger did not flag ambiguous."""
    seen: dict[str, int] = {}
    for message in received:
        if message.message_id:
            seen[message.message_id] = seen.get(message.message_id, 0) + 1
    twice = [mid for mid, n in seen.items() if n > 1]
    if not twice:
        return []
    flagged = sql(
        db,
        "SELECT message_id_header FROM herald.deliveries"
        " WHERE ambiguous AND message_id_header = ANY(%s)",
        (twice,),
    )
    return sorted(set(twice) - {r["message_id_header"] for r in flagged})


@dataclass
class Outcome:
    report: Report
    pause: float
    unflagged: list[str]
    line: str


# -- the RabbitMQ faults -------------------------------------------------------------------------


def declare_queues(url: str) -> None:
    """Declare Herald's queues (quorum) as a worker would, so their leaders are placed."""
    settings = settings_from_mapping(tomllib.loads(quorum_toml()), {"HERALD_BROKER_URL": url})
    broker = rabbitmq_broker(settings, [], max_priority=MAX_PRIORITY)
    try:
        for queue in sorted(set(QUEUES.values())):
            broker.declare_queue(queue, ensure=True)
    finally:
        broker.close()


def write_during(db: str, offset: int, n: int, chunks: int = 10, every: float = 0.5) -> None:
    """Write `n` changes in `chunks`, one every `every` seconds, from the fault on."""
    done = 0
    for k in range(chunks):
        size = n // chunks + (1 if k < n % chunks else 0)
        insert_classes(db, size, offset=offset + done)
        done += size
        time.sleep(every)


def run_with_fault(
    cluster: RabbitMQCluster,
    vhost: str,
    h: Harness,
    name: str,
    fault: Callable[[ClusterNode], None],
) -> Outcome:
    declare_queues(cluster.urls(vhost))
    leader = cluster.leader_of(vhost, "email")
    others = [n for n in cluster.nodes if n is not leader]
    group_a = {**h.env, "HERALD_BROKER_URL": cluster.urls(vhost, [leader, *others])}
    group_b = {**h.env, "HERALD_BROKER_URL": cluster.urls(vhost, [*others, leader])}
    h.env = group_b  # the harness's own orchestrator and sweeper runs (nudges)
    first = N // 2  # the rest is written during the fault: orchestrated through it
    insert_classes(h.db, first)
    for label, env in (("a", group_a), ("b", group_b)):
        h.workers.append(Worker(env, h.tmp_path / f"worker-{label}.log", threads=8))
    progress = Progress(h.smtp)
    watch = LeaderWatch(cluster, vhost, "email")
    try:
        print(f"\n  orchestrate {h.orchestrate()}")
        wait_until(lambda: h.received() >= N // 4, timeout=120)
        at, t0 = h.received(), time.monotonic()
        faulted_at = sql(h.db, "SELECT clock_timestamp() AS t")[0]["t"]
        trickle = threading.Thread(target=write_during, args=(h.db, first, N - first))
        trickle.start()
        fault(leader)
        trickle.join()
        h.wait_done(N, timeout=240)
    finally:
        progress.stop()
        watch.stop()
    report = h.report()
    pause = progress.pause_after(t0)
    unflagged = unflagged_duplicates(h.db, h.smtp.messages)
    line = (
        f"{name}: lost={report.lost} duplicated={report.duplicated} "
        f"ambiguous={report.ambiguous} unflagged={len(unflagged)} pause={pause:.2f}s "
        f"(fault at {at} emails; the email queue's leader, node {leader.index + 1}, "
        f"{watch.moved(t0, leader.index + 1)}; {report.elapsed:.0f}s in all)"
    )
    after = sql(
        h.db,
        "SELECT round(extract(epoch FROM min(r.started_at) - %(t)s)::numeric, 2) AS run_start,"
        " round(extract(epoch FROM max(r.finished_at) - %(t)s)::numeric, 2) AS run_end,"
        " (SELECT round(extract(epoch FROM max(published_at) - %(t)s)::numeric, 2)"
        "    FROM herald.jobs WHERE created_at > %(t)s) AS published_by"
        " FROM herald.orchestrator_runs r WHERE r.claimed > 0 AND r.started_at > %(t)s",
        {"t": faulted_at},
    )[0]
    print(f"  {line}\n  emails by second after the fault: {progress.timeline(t0)}")
    print(f"  the changes written during it (seconds after the fault): {after}")
    return Outcome(report, pause, unflagged, line)


@pytest.fixture
def harness(cluster, vhost, herald_db, smtp_server, openai_server, tmp_path) -> Iterator[Harness]:
    env = herald_environment(herald_db, cluster.urls(vhost), smtp_server, openai_server, tmp_path)
    h = Harness(env, herald_db, smtp_server, tmp_path, quorum_toml())
    try:
        yield h
    finally:
        h.close()


def assert_no_loss(outcome: Outcome) -> None:
    assert_clean(outcome.report, emails=N)
    assert outcome.unflagged == [], outcome.unflagged[:10]
    assert outcome.report.ok + outcome.report.duplicated == N


def test_the_batch_publisher_carries_on_through_another_node(cluster, vhost):
    """A publisher whose node goes away publishes its next batches through the next node
    of its list, without a restart (the confirm channel is opened again)."""
    from actors.publish import ConfirmingPublisher
    from herald.ledger import PRIORITIES

    first, *rest = cluster.nodes
    settings = settings_from_mapping(
        tomllib.loads(quorum_toml()), {"HERALD_BROKER_URL": cluster.urls(vhost, [first, *rest])}
    )
    broker = rabbitmq_broker(settings, [], max_priority=MAX_PRIORITY)
    publisher = ConfirmingPublisher(broker)

    def batch(n: int) -> list:
        return [
            dramatiq.Message(queue_name="email", actor_name="send_emails", args=([i],),
                             kwargs={}, options={"broker_priority": PRIORITIES["normal"]})
            for i in range(n)
        ]  # fmt: skip

    try:
        sent = [len(publisher.publish(batch(50)))]
        before = publisher._local.channel.connection._impl.params.port
        first.stop_app()
        try:
            sent += [len(publisher.publish(batch(50))), len(publisher.publish(batch(50)))]
            after = publisher._local.channel.connection._impl.params.port
            ready = broker.get_queue_message_counts("email")[0]
        finally:
            first.start_app()
    finally:
        publisher.close()
        broker.close()
    print(f"\n  confirmed {sent} through port {before}, then {after}; {ready} in the queue")
    assert sent == [50, 50, 50] and ready == 150
    assert before == first.port and after in {n.port for n in rest}


def test_sigkill_of_the_email_queue_leader_loses_nothing(cluster, vhost, harness):
    def kill(node: ClusterNode) -> None:
        node.kill()

    outcome = run_with_fault(cluster, vhost, harness, "SIGKILL", kill)
    assert_no_loss(outcome)


def test_a_frozen_email_queue_leader_loses_nothing(cluster, vhost, harness):
    def freeze(node: ClusterNode) -> None:
        node.freeze()
        timer = threading.Timer(FREEZE_SECONDS, node.thaw)
        timer.daemon = True
        timer.start()

    outcome = run_with_fault(cluster, vhost, harness, f"SIGSTOP {FREEZE_SECONDS:.0f}s", freeze)
    assert_no_loss(outcome)


@pytest.mark.parametrize("drained", [False, True], ids=["stop_app", "drain-then-stop_app"])
def test_a_graceful_stop_of_the_email_queue_leader_loses_nothing(cluster, vhost, harness, drained):
    def stop(node: ClusterNode) -> None:
        if drained:  # what docs/operations.md says to do first: leaders move away
            node.upgrade("drain")
        node.stop_app()

    name = "drain + stop_app" if drained else "graceful stop_app"
    outcome = run_with_fault(cluster, vhost, harness, name, stop)
    assert_no_loss(outcome)


# -- PostgreSQL failover ------------------------------------------------------------------------


@pytest.fixture
def replicated() -> Iterator[ReplicatedPostgres]:
    try:
        pair = start_replicated_postgres()
    except ServiceUnavailable as exc:
        require_service("a PostgreSQL primary with a standby", str(exc))
    yield pair
    pair.close()


def test_promoting_the_standby_mid_run_loses_nothing_and_claims_nothing_twice(
    cluster, vhost, replicated, smtp_server, openai_server, tmp_path
):
    url = replicated.create_database(fresh_database_name())
    with connect(url) as conn:
        upgrade(conn)
    create_app_tables(url)
    env = herald_environment(url, cluster.urls(vhost), smtp_server, openai_server, tmp_path)
    h = Harness(env, url, smtp_server, tmp_path, quorum_toml())
    try:
        insert_classes(url, PG_N // 2)
        h.workers.append(Worker(h.env, tmp_path / "worker.log", threads=8))
        print(f"\n  orchestrate {h.orchestrate()}")
        wait_until(lambda: h.received() >= PG_N // 6, timeout=120)
        at = h.received()
        down = replicated.fail_over()
        promoted = time.time()
        # Changes after the promote: the orchestrator must claim them on the new primary,
        # where the advisory lock it takes per batch (transaction-level) is free again.
        insert_classes(url, PG_N - PG_N // 2, offset=PG_N // 2)
        h.wait_done(PG_N, timeout=240)
        report = h.report()
        sweep = h.sweep()
        runs = sql(
            url,
            "SELECT count(*) AS runs, coalesce(sum(claimed), 0) AS claimed"
            " FROM herald.orchestrator_runs WHERE started_at > to_timestamp(%s)",
            (promoted,),
        )[0]
        port = sql(url, "SELECT inet_server_port() AS port")[0]["port"]
        unflagged = unflagged_duplicates(url, smtp_server.messages)
    finally:
        h.close()
    print(
        f"  promoted the standby at {at} emails ({down:.2f}s without a primary); "
        f"now on port {port} (standby {replicated.standby.port}); orchestrator runs after "
        f"the promote: {runs}; sweep after: {sweep}"
    )
    print(
        f"  PostgreSQL failover: lost={report.lost} duplicated={report.duplicated} "
        f"ambiguous={report.ambiguous} unflagged={len(unflagged)} "
        f"claimed_twice={report.claimed_twice}"
    )
    assert port == replicated.standby.port
    assert_clean(report, emails=PG_N)
    assert unflagged == [], unflagged[:10]
    assert runs["claimed"] > 0  # the orchestrator's lock was taken again on the new primary
    assert sweep.startswith("rc=0")
