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


# --- unknown options and bad values: one line naming where, what and the value -------------

REPO = Path(__file__).resolve().parents[1]


def refusal(raw, **env) -> str:
    with pytest.raises(ConfigError) as refused:
        settings(raw, **env)
    message = str(refused.value)
    assert "\n" not in message and "type=" not in message and "Input should" not in message
    return message


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (
            {"mail": {"batchsize": 5}},
            "[mail] unknown option 'batchsize' (did you mean 'batch_size'?)",
        ),
        ({"ai": {"modle": "gpt"}}, "[ai] unknown option 'modle' (did you mean 'model'?)"),
        (
            {"orchestrator": {"batch_sise": 10}},
            "[orchestrator] unknown option 'batch_sise' (did you mean 'batch_size'?)",
        ),
        (
            {"breakers": {"failure_treshold": 3}},
            "[breakers] unknown option 'failure_treshold' (did you mean 'failure_threshold'?)",
        ),
        (
            {"limits": {"emails_per_secnd": 3}},
            "[limits] unknown option 'emails_per_secnd' (did you mean 'emails_per_second'?)",
        ),
        ({"retention": {"dayz": 3}}, "[retention] unknown option 'dayz' (did you mean 'days'?)"),
        (
            {"broker": {"queue_typ": "quorum"}},
            "[broker] unknown option 'queue_typ' (did you mean 'queue_type'?)",
        ),
        (
            {"api": {"publicurl": "x"}},
            "[api] unknown option 'publicurl' (did you mean 'public_url'?)",
        ),
        (
            {"retries": {"enrich": {"max_retrys": 3}}},
            "[retries.enrich] unknown option 'max_retrys' (did you mean 'max_retries'?)",
        ),
        (
            {"retries": {"enrch": {"max_retries": 3}}},
            "[retries] unknown actor 'enrch' (did you mean 'enrich'?)",
        ),
        (
            {"routes": [{"name": "coaches", "recipent": ["a@example.com"]}]},
            "route 'coaches': unknown option 'recipent' (did you mean 'recipients'?)",
        ),
        ({"aii": {"model": "gpt"}}, "herald.toml: unknown section [aii] (did you mean [ai]?)"),
    ],
)
def test_an_unknown_option_is_refused_naming_the_section_and_the_closest_known_one(raw, says):
    assert refusal(raw) == says


def test_every_section_refuses_an_option_it_does_not_know():
    from herald.config import known_options

    for section in known_options():
        if section == "routes":
            raw: dict = {"routes": [{"name": "r", "no_such_option": 1}]}
            where = "route 'r':"
        elif section == "retries":
            raw, where = {"retries": {"sweep": {"no_such_option": 1}}}, "[retries.sweep]"
        else:
            raw, where = {section: {"no_such_option": 1}}, f"[{section}]"
        assert refusal(raw).startswith(f"{where} unknown option 'no_such_option'"), section


def test_an_unknown_section_far_from_any_lists_the_known_ones():
    assert refusal({"zebra": {}}).startswith("herald.toml: unknown section [zebra] (known: [mail]")


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (
            {"routes": [{"name": "coaches", "priority": "high"}]},
            "route 'coaches': priority 'high' is not one of urgent, normal, low",
        ),
        (
            {"mail": {"batch_size": "x"}},
            "[mail] batch_size must be an integer from 1 to 200, not 'x'",
        ),
        ({"ai": {"enabled": "yes"}}, "[ai] enabled must be true or false, not 'yes'"),
        ({"ai": {"timeout_seconds": -1}}, "[ai] timeout_seconds must be a number above 0, not -1"),
        (
            {"orchestrator": {"batch_size": 2.5}},
            "[orchestrator] batch_size must be a positive integer, not 2.5",
        ),
        (
            {"broker": {"queue_type": "mirrored"}},
            "[broker] queue_type 'mirrored' is not one of classic, quorum",
        ),
        (
            {"retention": {"days": -1}},
            "[retention] days must be a non-negative integer (0: no periodic purge), not -1",
        ),
        (
            {"limits": {"emails_per_second": "10"}},
            "[limits] emails_per_second must be a number above 0, not '10'",
        ),
        (
            {"routes": [{"name": "r", "operations": ["INSERT", "truncate"]}]},
            "route 'r': operations 'TRUNCATE' is not one of INSERT, UPDATE, DELETE",
        ),
        (
            {"routes": [{"name": "r", "ai": "true"}]},
            "route 'r': ai must be true or false, not 'true'",
        ),
        (
            {"routes": [{"name": "r", "mode": "digest", "digest_max_items": 0}]},
            "route 'r': digest_max_items must be an integer from 1 to 200, not 0",
        ),
        (
            {"routes": [{"name": "r", "recipients": "ops@example.com"}]},
            "route 'r': recipients must be a list of email addresses, not 'ops@example.com'",
        ),
        ({"routes": "members"}, "routes must be an array of tables ([[routes]]), not 'members'"),
        ({"ai": "on"}, "[ai] must be a table, not 'on'"),
        (
            {"retries": {"enrich": {"max_retries": -1}}},
            "[retries.enrich] max_retries must be a non-negative integer, not -1",
        ),
    ],
)
def test_a_bad_value_is_quoted_naming_where_it_is(raw, says):
    assert refusal(raw) == says


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"HERALD_METRICS_PORT": "abc"},
            "HERALD_METRICS_PORT must be an integer from 0 to 65535, not 'abc'",
        ),
        (
            {"HERALD_API_PORT": "80800"},
            "HERALD_API_PORT must be an integer from 0 to 65535, not '80800'",
        ),
        ({"HERALD_WAKER": "of"}, "HERALD_WAKER must be on or off, not 'of'"),
        ({"HERALD_MAIL_FROM": "ops"}, "HERALD_MAIL_FROM: invalid email address 'ops'"),
    ],
)
def test_a_bad_environment_value_is_named_by_its_variable(env, says):
    assert refusal({}, **env) == says


def test_settings_stay_immutable_and_replace_checks_the_new_value():
    import dataclasses

    s = settings({"routes": [{"name": "r", "recipients": ["ops@example.com"]}]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.routes[0].priority = "urgent"
    assert dataclasses.replace(s, api_port=9000).api_port == 9000
    assert dataclasses.replace(s.routes[0], operations=("DELETE",)).operations == ("DELETE",)
    with pytest.raises(ValueError):
        dataclasses.replace(s.routes[0], priority="high")


def test_the_example_configuration_loads():
    s = load_settings({"HERALD_CONFIG": str(REPO / "herald.example.toml")})
    assert [r.name for r in s.routes] == ["new-members", "class-changes", "member-updates"]
    assert s.config_path and s.mail_domain == "example.com"
