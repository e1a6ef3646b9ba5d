"""Quorum mode without a cluster: `[broker]` settings, the node list, priority routing, what
is refused at start, and the queues a quorum broker declares on a real (single) node."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote, urlsplit

import dramatiq
import pika
import pytest

from actors.broker import build_broker
from actors.quorum import (
    QuorumRabbitmqBroker,
    QuorumUnsupported,
    level_of,
    priority_queue,
    refuse_old,
    server_version,
)
from actors.rabbitmq import broker_nodes, node_order
from herald.config import BrokerSettings, ConfigError, settings_from_mapping
from herald.ledger import PRIORITIES


def broker_settings(**raw) -> BrokerSettings:
    return settings_from_mapping({"broker": raw}, {}).broker


def quorum_broker(url: str = "amqp://guest:guest@127.0.0.1:1/%2F", **kw) -> QuorumRabbitmqBroker:
    options = {"priority_queues": ["enrich", "email"], "delivery_limit": 20, **kw}
    return QuorumRabbitmqBroker(url=url, confirm_delivery=True, middleware=[], **options)


# -- settings -------------------------------------------------------------------------------------


def test_classic_queues_are_the_default():
    assert broker_settings() == BrokerSettings("classic", 20, True)


def test_quorum_queues_are_chosen_in_the_broker_section():
    chosen = broker_settings(queue_type="quorum", delivery_limit=5, shuffle_nodes=False)
    assert chosen == BrokerSettings("quorum", 5, False)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"queue_type": "mirrored"}, "queue_type 'mirrored' is not one of classic, quorum"),
        ({"queue_type": "stream"}, "'stream' is not one of"),
        ({"delivery_limit": 0}, "delivery_limit must be a positive integer"),
        ({"delivery_limit": "5"}, "delivery_limit must be a positive integer"),
        ({"shuffle_nodes": "yes"}, "shuffle_nodes must be true or false"),
        ({"queue_typ": "quorum"}, "unknown option 'queue_typ' (did you mean 'queue_type'?)"),
    ],
)
def test_a_broker_section_herald_cannot_honour_is_refused_naming_the_value(raw, says):
    with pytest.raises(ConfigError, match=None) as refused:
        broker_settings(**raw)
    assert says in str(refused.value)


def test_quorum_mode_on_the_in_memory_broker_is_refused():
    settings = settings_from_mapping(
        {"broker": {"queue_type": "quorum"}}, {"HERALD_BROKER_URL": "stub://"}
    )
    with pytest.raises(ConfigError, match="needs RabbitMQ"):
        build_broker(settings, pool=None)  # type: ignore[arg-type]


# -- the node list -------------------------------------------------------------------------------


def test_several_nodes_are_separated_by_semicolons():
    url = " amqp://h:p@a:5672/v ; amqp://h:p@b:5672/v;amqps://h:p@c:5671/v; "
    assert broker_nodes(url) == [
        "amqp://h:p@a:5672/v",
        "amqp://h:p@b:5672/v",
        "amqps://h:p@c:5671/v",
    ]


def test_a_node_that_is_not_amqp_is_refused_without_quoting_its_password():
    with pytest.raises(ConfigError) as refused:
        broker_nodes("amqp://u:pw@a/v;http://u:hunter2-secret@b/v")
    assert "node 2 of 2" in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_each_process_shuffles_the_nodes_unless_told_not_to():
    nodes = [f"amqp://n{i}" for i in range(5)]
    assert node_order(nodes, shuffle=False) == nodes
    firsts = {node_order(nodes, shuffle=True)[0] for _ in range(200)}
    assert sorted(node_order(nodes, shuffle=True)) == sorted(nodes)
    assert len(firsts) > 1  # processes spread over the nodes


# -- priorities as queues ------------------------------------------------------------------------


def test_each_priority_has_a_queue_of_its_own():
    assert [level_of(PRIORITIES[p]) for p in ("urgent", "normal", "low")] == [
        "urgent",
        "normal",
        "low",
    ]
    assert level_of(None) == "normal"
    assert [priority_queue("email", p) for p in (9, 5, 1, None)] == [
        "email.urgent",
        "email",
        "email.low",
        "email",
    ]


def test_the_broker_routes_a_message_to_its_prioritys_queue_in_one_place():
    broker = quorum_broker()
    urgent: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="email", actor_name="send_email", args=(1,), kwargs={},
        options={"broker_priority": PRIORITIES["urgent"]},
    )  # fmt: skip
    routed = broker.route(urgent)
    assert routed.queue_name == "email.urgent" and routed.message_id == urgent.message_id
    assert broker.route(routed) is routed  # routing twice changes nothing
    tick: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="orchestrate", actor_name="orchestrate", args=(), kwargs={}, options={}
    )
    assert broker.route(tick) is tick  # queues without priorities are one queue
    assert broker.logical_queue("email.low") == "email"
    assert broker.logical_queue("orchestrate.low") == "orchestrate.low"
    assert broker.physical_queues("enrich") == ["enrich.urgent", "enrich", "enrich.low"]


def test_quorum_queues_take_no_max_priority():
    with pytest.raises(QuorumUnsupported, match="x-max-priority"):
        quorum_broker(max_priority=10)


# -- refused at start ----------------------------------------------------------------------------


class _Announced:
    def __init__(self, version: bytes) -> None:
        self.server_properties = {"product": b"RabbitMQ", "version": version}


def test_a_rabbitmq_older_than_3_10_is_refused_with_what_to_do():
    assert server_version(_Announced(b"3.9.29")) == (3, 9, 29)
    with pytest.raises(QuorumUnsupported) as refused:
        refuse_old(server_version(_Announced(b"3.9.29")))
    assert "3.10 or later" in str(refused.value) and "3.9.29" in str(refused.value)
    refuse_old(server_version(_Announced(b"3.10.8")))
    refuse_old(server_version(_Announced(b"4.1.0-rc.1")))


# -- on a real node ------------------------------------------------------------------------------


def _vhost(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


@pytest.mark.integration
def test_every_queue_herald_declares_is_a_quorum_queue(rabbitmq_server, rabbitmq_url):
    broker = quorum_broker(rabbitmq_url, delivery_limit=7)
    try:
        broker.verify()
        for queue in ("orchestrate", "enrich", "email", "maintenance"):
            broker.declare_queue(queue, ensure=True)
    finally:
        broker.close()
    time.sleep(1.2)  # the management API's figures lag
    queues = rabbitmq_server.queues(_vhost(rabbitmq_url))
    levels = ("email.urgent", "email", "email.low")
    expected = {
        *(n for q in ("orchestrate", "maintenance") for n in (q, f"{q}.DQ", f"{q}.XQ")),
        *(n for q in ("enrich", "email") for n in (q, f"{q}.urgent", f"{q}.low", f"{q}.XQ")),
        *(f"{q}.DQ" for base in ("enrich", "email") for q in (base, f"{base}.urgent",
                                                               f"{base}.low")),
    }  # fmt: skip
    assert set(queues) == expected
    assert {q["type"] for q in queues.values()} == {"quorum"}
    for name in levels:
        arguments = queues[name]["arguments"]
        assert arguments["x-dead-letter-routing-key"] == "email.XQ"
        assert arguments["x-dead-letter-strategy"] == "at-least-once"
        assert arguments["x-overflow"] == "reject-publish"
        assert arguments["x-delivery-limit"] == 7
        assert "x-max-priority" not in arguments
    assert "x-delivery-limit" not in queues["email.DQ"]["arguments"]


@pytest.mark.integration
def test_a_poison_message_is_dead_lettered_after_the_delivery_limit(rabbitmq_url):
    broker = quorum_broker(rabbitmq_url, delivery_limit=2)
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="email", actor_name="send_email", args=(1,), kwargs={},
        options={"broker_priority": 1},
    )  # fmt: skip
    try:
        broker.enqueue(message)  # to email.low
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
        channel = connection.channel()
        returned = 0
        for _ in range(10):  # a worker dying with it, again and again
            method, _, _ = channel.basic_get("email.low")
            if method is None:
                break
            channel.basic_reject(method.delivery_tag, requeue=True)
            returned += 1
        dead = None
        for _ in range(50):
            dead, _, body = channel.basic_get("email.XQ", auto_ack=True)
            if dead is not None:
                break
            time.sleep(0.1)
        connection.close()
    finally:
        broker.close()
    assert returned == 3  # the first delivery and the 2 the limit allows
    assert dead is not None and dramatiq.Message.decode(body).message_id == message.message_id


@pytest.mark.integration
def test_a_classic_queue_left_from_classic_mode_is_refused_by_name(rabbitmq_url):
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    connection.channel().queue_declare("email", durable=True)
    connection.close()
    broker = quorum_broker(rabbitmq_url)
    try:
        with pytest.raises(QuorumUnsupported) as refused:
            broker.declare_queue("email", ensure=True)
    finally:
        broker.close()
    text = str(refused.value)
    assert "'email.urgent'" in text or "'email'" in text
    assert "drained and deleted" in text and "guest" not in text


# -- each node reported -------------------------------------------------------------------------


@pytest.mark.integration
def test_readiness_reports_each_node_and_one_down_is_a_warning(herald_db, pool, rabbitmq_url):
    from fastapi.testclient import TestClient

    from herald.web.app import create_app
    from tests.api_fixtures import herald_app
    from tests.services import free_port

    dead = f"amqp://guest:secret-password@127.0.0.1:{free_port()}/%2F"
    app = herald_app(herald_db, pool, f"{rabbitmq_url};{dead}")
    try:
        with TestClient(create_app(app), raise_server_exceptions=False) as client:
            ready = client.get("/readyz")
            health = client.get("/health")
    finally:
        app.publisher.close()
        app.broker.close()
    assert ready.status_code == 200 and ready.json()["status"] == "warn", ready.text
    nodes = ready.json()["checks"]["rabbitmq:node"]
    assert [n["status"] for n in nodes] == ["pass", "warn"]
    assert nodes[1]["componentId"] == dead.rsplit("@", 1)[1].split("/")[0]
    assert "unreachable" in nodes[1]["output"]
    assert health.json()["checks"]["rabbitmq:node"][1]["status"] == "warn"
    assert "secret-password" not in ready.text + health.text


@pytest.mark.integration
def test_herald_check_names_each_node_too_old_for_quorum_queues(rabbitmq_url, monkeypatch):
    from herald.check import services

    settings = settings_from_mapping(
        {"broker": {"queue_type": "quorum"}}, {"HERALD_BROKER_URL": rabbitmq_url}
    )
    fine = services.check_rabbitmq(settings)
    assert fine.status == "ok" and "(quorum queues)" in fine.detail
    monkeypatch.setattr(services, "server_version", lambda _connection: (3, 9, 29))
    old = services.check_rabbitmq(settings)
    assert old.status == "fail" and "3.10 or later" in old.detail and "3.9.29" in old.detail
    assert urlsplit(rabbitmq_url).hostname in old.detail and "guest:" not in old.detail


def test_a_worker_boots_while_rabbitmq_is_unreachable_and_checks_it_later():
    from actors.quorum import QuorumCheck
    from tests.services import free_port

    broker = quorum_broker(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    QuorumCheck().before_worker_boot(broker, worker=None)  # no refusal: not reachable yet
    assert broker._verified is False


def test_a_worker_whose_rabbitmq_cannot_run_quorum_queues_refuses_to_boot(monkeypatch):
    from actors.quorum import QuorumCheck

    broker = quorum_broker()
    monkeypatch.setattr(type(broker), "connection", _Announced(b"3.9.29"))
    with pytest.raises(QuorumUnsupported, match="3.9.29"):
        QuorumCheck().before_worker_boot(broker, worker=None)
