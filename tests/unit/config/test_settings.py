from __future__ import annotations

import pytest

from flightbook.config.settings import Settings, SettingsError

pytestmark = pytest.mark.unit


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})

    assert settings.command_port == 8000
    assert settings.query_port == 8001
    assert settings.postgres_url is None


def test_values_are_converted_from_strings() -> None:
    settings = Settings.from_env(
        {"FLIGHTBOOK_QUERY_PORT": "9001", "FLIGHTBOOK_HOLD_SECONDS": "2.5"}
    )

    assert settings.query_port == 9001
    assert settings.hold_seconds == 2.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FLIGHTBOOK_QUERY_PORT", "abc"),
        ("FLIGHTBOOK_COMMAND_PORT", "70000"),
        ("FLIGHTBOOK_LOG_FORMAT", "xml"),
        ("FLIGHTBOOK_HOLD_SECONDS", "-1"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})

    message = str(caught.value)
    assert message.startswith(variable)
    assert "\n" not in message


def test_an_unknown_variable_is_refused_so_typos_do_not_pass_silently() -> None:
    with pytest.raises(SettingsError, match=r"^FLIGHTBOOK_POSTGRES_UR: unknown setting$"):
        Settings.from_env({"FLIGHTBOOK_POSTGRES_UR": "postgresql://x"})


def test_other_variables_and_empty_values_are_ignored() -> None:
    settings = Settings.from_env({"PATH": "/bin", "FLIGHTBOOK_REDIS_URL": ""})

    assert settings.redis_url is None


def test_settings_survive_the_trip_to_a_child_process_environment() -> None:
    settings = Settings.from_env(
        {"FLIGHTBOOK_MONGO_URL": "mongodb://h:1", "FLIGHTBOOK_QUERY_PORT": "1"}
    )

    assert Settings.from_env(settings.to_env()) == settings


def test_configured_urls_win_over_the_local_stack() -> None:
    settings = Settings.from_env({"FLIGHTBOOK_REDIS_URL": "redis://mine:1/0"})

    filled = settings.with_urls(redis_url="redis://stack:2/0", mongo_url="mongodb://stack:3")

    assert filled.redis_url == "redis://mine:1/0"
    assert filled.mongo_url == "mongodb://stack:3"


def test_the_gateway_gets_the_local_postgres_database_beside_ours_and_shares_a_configured_one() -> (
    None
):
    local = Settings.from_env({}).with_urls(
        postgres_url="postgresql://stack:1/flightbook",
        gateway_postgres_url="postgresql://stack:1/flightbook_gateway",
    )
    configured = Settings.from_env({"FLIGHTBOOK_POSTGRES_URL": "postgresql://mine:1/db"})

    assert local.gateway_database() == "postgresql://stack:1/flightbook_gateway"
    assert (
        configured.with_urls(
            gateway_postgres_url="postgresql://stack:1/flightbook_gateway"
        ).gateway_database()
        == "postgresql://mine:1/db"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FLIGHTBOOK_RATE_LIMIT_WRITES", "lots"),
        ("FLIGHTBOOK_RATE_LIMIT_READS", "0/second"),
        ("FLIGHTBOOK_RATE_LIMIT_ADDRESS", "5/fortnight"),
        ("FLIGHTBOOK_RATE_LIMIT_REFUSED_TOKENS", "5/second;;60/minute"),
    ],
)
def test_a_rate_limit_that_is_not_in_the_limits_notation_is_refused_at_load(
    variable: str, value: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})

    assert str(caught.value) == (
        f"{variable}={value!r}: not rate limits such as '5/second;60/minute'"
    )


def test_rate_limits_and_trusted_proxies_are_read_in_their_notation() -> None:
    settings = Settings.from_env(
        {
            "FLIGHTBOOK_RATE_LIMIT_WRITES": "2 per second; 30/minute",
            "FLIGHTBOOK_TRUSTED_PROXIES": "10.0.0.7, 172.16.0.0/12,::1",
        }
    )

    assert settings.rate_limit_writes == "2 per second; 30/minute"
    assert [str(net) for net in settings.trusted_proxy_networks] == [
        "10.0.0.7/32",
        "172.16.0.0/12",
        "::1/128",
    ]


def test_a_trusted_proxy_that_is_not_an_address_is_refused_at_load() -> None:
    with pytest.raises(SettingsError, match=r"^FLIGHTBOOK_TRUSTED_PROXIES='10.0.0.7, proxy'"):
        Settings.from_env({"FLIGHTBOOK_TRUSTED_PROXIES": "10.0.0.7, proxy"})
