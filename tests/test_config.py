"""Configuration is refused at start with an error that names the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.config import ConfigError, load_settings, settings_from_mapping


def settings(raw, **env):
    return settings_from_mapping(raw, env)


def test_routes_are_read_in_order_with_their_options():
    s = settings(
        {
            "routes": [
                {
                    "table": "classes",
                    "recipients": ["ops@example.com"],
                    "ai": True,
                    "priority": "urgent",
                },
                {
                    "table": "*",
                    "operations": ["delete"],
                    "recipients": ["Audit <audit@example.com>"],
                },
            ]
        }
    )
    assert [r.table for r in s.routes] == ["classes", "*"]
    assert s.routes[0].ai and s.routes[0].priority == "urgent"
    assert s.routes[1].operations == ("DELETE",)


def test_an_invalid_recipient_is_refused_naming_the_route():
    with pytest.raises(ConfigError, match="route 'billing'.*not-an-address"):
        settings({"routes": [{"name": "billing", "recipients": ["not-an-address"]}]})


def test_a_recipient_with_a_line_break_is_refused():
    with pytest.raises(ConfigError, match="invalid email address"):
        settings({"routes": [{"recipients": ["ops@example.com\r\nBcc: x@evil.example"]}]})


def test_an_unknown_route_option_is_refused():
    with pytest.raises(ConfigError, match="unknown option.*recipient"):
        settings({"routes": [{"recipient": ["ops@example.com"]}]})


def test_a_malformed_toml_file_names_the_line(tmp_path: Path):
    path = tmp_path / "herald.toml"
    path.write_text('[ai]\nenabled = true\n[[routes]\ntable = "x"\n')
    with pytest.raises(ConfigError, match=r"line 3"):
        load_settings({"HERALD_CONFIG": str(path)})


def test_ai_is_active_only_with_a_key():
    assert not settings({}).ai_active
    assert settings({}, OPENAI_API_KEY="sk-test").ai_active
    assert not settings({"ai": {"enabled": False}}, OPENAI_API_KEY="sk-test").ai_active


def test_the_api_key_is_not_in_the_settings_repr():
    assert "sk-secret" not in repr(settings({}, OPENAI_API_KEY="sk-secret"))


def test_a_backoff_longer_than_rabbitmqs_consumer_timeout_is_refused():
    with pytest.raises(ConfigError, match="consumer_timeout"):
        settings({"retries": {"send_email": {"max_backoff_ms": 60 * 60 * 1000}}})


def test_environment_variables_configure_the_services():
    s = settings(
        {},
        HERALD_DATABASE_URL="postgresql://db/x",
        HERALD_BROKER_URL="amqp://mq",
        HERALD_SMTP_URL="smtp://mail:25",
        HERALD_MAIL_FROM="Ops <ops@example.com>",
        HERALD_METRICS_PORT="9300",
    )
    assert (s.database_url, s.broker_url, s.smtp_url, s.metrics_port) == (
        "postgresql://db/x",
        "amqp://mq",
        "smtp://mail:25",
        9300,
    )
    assert s.mail_domain == "example.com"


def test_the_email_batch_size_defaults_to_20_and_is_bounded():
    assert settings_from_mapping({}, {}).mail_batch_size == 20
    assert settings_from_mapping({"mail": {"batch_size": 1}}, {}).mail_batch_size == 1
    for bad in (0, 201, "20", 2.5, True):
        with pytest.raises(ConfigError, match=r"\[mail\] batch_size"):
            settings_from_mapping({"mail": {"batch_size": bad}}, {})
