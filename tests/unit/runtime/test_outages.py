"""Which errors mean "a server is away" (ride it out, 503) and which are bugs (ADR 0018)."""

from __future__ import annotations

import psycopg
import psycopg_pool
import pymongo.errors
import pytest
import redis.exceptions
from eventsourcing.persistence import IntegrityError, OperationalError

from flightbook.runtime.outages import unavailable_server

pytestmark = pytest.mark.unit


def _wrapped(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as exc:
            raise outer from exc
    except Exception as caught:
        return caught


@pytest.mark.parametrize(
    ("error", "server"),
    [
        (psycopg.OperationalError("connection refused"), "postgres"),
        (psycopg_pool.PoolTimeout("couldn't get a connection after 3.00 sec"), "postgres"),
        (psycopg.errors.AdminShutdown("terminating connection"), "postgres"),
        (psycopg.InterfaceError("the connection is closed"), "postgres"),
        (OperationalError("couldn't get a connection"), "postgres"),
        (pymongo.errors.ServerSelectionTimeoutError("no servers"), "mongo"),
        (pymongo.errors.AutoReconnect("connection reset"), "mongo"),
        (redis.exceptions.ConnectionError("refused"), "redis"),
        (redis.exceptions.TimeoutError("timed out"), "redis"),
    ],
)
def test_an_unreachable_server_is_named(error: Exception, server: str) -> None:
    assert unavailable_server(error) == server


def test_the_cause_of_a_wrapping_error_counts() -> None:
    error = _wrapped(RuntimeError("step failed"), psycopg.OperationalError("server closed"))

    assert unavailable_server(error) == "postgres"


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        KeyError("missing"),
        IntegrityError("duplicate key"),
        psycopg.errors.UniqueViolation("duplicate key"),
        pymongo.errors.DuplicateKeyError("E11000"),
        redis.exceptions.ResponseError("WRONGTYPE"),
    ],
)
def test_other_errors_are_bugs_not_outages(error: Exception) -> None:
    assert unavailable_server(error) is None
