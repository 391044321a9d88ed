"""The login throttle on a real Redis: who is locked out, where, and for how long."""

from __future__ import annotations

import time

import pytest
import redis

from flightbook.config.settings import Settings
from flightbook.identity.throttle import LoginThrottle

pytestmark = pytest.mark.integration


def a_throttle(cache: redis.Redis, settings: Settings, window: float = 60) -> LoginThrottle:
    return LoginThrottle(
        cache,
        prefix=settings.redis_prefix,
        failures_per_account=3,
        failures_per_address=5,
        window_seconds=window,
    )


def test_an_attacker_elsewhere_cannot_lock_the_owner_out_at_a_known_address(
    cache: redis.Redis, settings: Settings
) -> None:
    throttle = a_throttle(cache, settings)
    throttle.succeeded("victim", "198.51.100.7")  # the owner logged in from home before
    for attacker in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        throttle.failed("victim", attacker)

    at_home = throttle.refusal("victim", "198.51.100.7")
    elsewhere = throttle.refusal("victim", "203.0.113.9")

    assert at_home is None
    assert elsewhere is not None
    assert elsewhere.code == "account_locked"
    assert 0 < elsewhere.retry_after <= 60


def test_an_address_with_many_failures_is_refused_for_every_account(
    cache: redis.Redis, settings: Settings
) -> None:
    throttle = a_throttle(cache, settings)
    for n in range(5):
        throttle.failed(f"account-{n}", "203.0.113.50")

    refusal = throttle.refusal("someone-else", "203.0.113.50")

    assert refusal is not None
    assert refusal.code == "address_throttled"
    assert throttle.refusal("someone-else", "203.0.113.51") is None


def test_a_lock_ends_by_itself_a_window_after_the_last_failure(
    cache: redis.Redis, settings: Settings
) -> None:
    throttle = a_throttle(cache, settings, window=1)
    for _ in range(3):
        throttle.failed("acct", "203.0.113.60")
    assert throttle.refusal("acct", "203.0.113.61") is not None

    key = f"{settings.redis_prefix}login:account:acct"
    while cache.exists(key):  # Redis expires the counter; wait for that fact itself
        time.sleep(0.05)

    assert throttle.refusal("acct", "203.0.113.61") is None


def test_a_successful_login_clears_the_failures_and_a_release_ends_a_lock(
    cache: redis.Redis, settings: Settings
) -> None:
    throttle = a_throttle(cache, settings)
    for _ in range(3):
        throttle.failed("acct", "203.0.113.70")

    assert throttle.release("acct") is True
    assert throttle.refusal("acct", "203.0.113.71") is None
    assert throttle.release("acct") is False
