"""Failed logins, throttled per address and locked per account, in Redis (ADR 0019).

- **Per address**: after ``failures_per_address`` failed logins (any accounts) within
  ``window_seconds``, that address is refused until the window passes.
- **Per account** (keyed by the email's lookup key, whether or not an account has that
  email, so a lockout tells nothing about who is registered): after
  ``failures_per_account`` failures within the window the account is locked, but only
  for addresses it has not logged in from before. An attacker cannot lock a victim out
  for good: the lock ends ``window_seconds`` after the last failure, it never applies
  at an address the victim used in the last 30 days, and an operator can release it
  (:meth:`LoginThrottle.release`).

Addresses are stored as keyed hashes (the account's lookup key is the key), not as
addresses. A successful login clears the account's failures and remembers the address.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

__all__ = ("LoginThrottle", "Refusal")

_KNOWN_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Refusal:
    """Why a login is refused before its password is even checked, and for how long."""

    code: str  # "address_throttled" or "account_locked"
    retry_after: int


class LoginThrottle:
    """Counts failed logins and says when to refuse one."""

    def __init__(
        self,
        cache: redis.Redis,
        *,
        prefix: str,
        failures_per_account: int,
        failures_per_address: int,
        window_seconds: float,
    ) -> None:
        self.cache = cache
        self.prefix = f"{prefix}login:"
        self.per_account = failures_per_account
        self.per_address = failures_per_address
        self.window = max(1, math.ceil(window_seconds))

    def _address_key(self, address: str) -> str:
        return f"{self.prefix}address:{hashlib.sha256(address.encode()).hexdigest()[:32]}"

    def _account_key(self, lookup: str) -> str:
        return f"{self.prefix}account:{lookup}"

    def _known_key(self, lookup: str) -> str:
        return f"{self.prefix}known:{lookup}"

    def _known_member(self, lookup: str, address: str) -> str:
        return hashlib.sha256(f"{lookup}|{address}".encode()).hexdigest()[:32]

    def refusal(self, lookup: str, address: str) -> Refusal | None:
        """Whether to refuse this login now (checked before the password)."""
        pipe = self.cache.pipeline(transaction=False)
        pipe.get(self._address_key(address))
        pipe.ttl(self._address_key(address))
        pipe.get(self._account_key(lookup))
        pipe.ttl(self._account_key(lookup))
        pipe.sismember(self._known_key(lookup), self._known_member(lookup, address))
        by_address, address_ttl, by_account, account_ttl, known = pipe.execute()
        if by_address is not None and int(by_address) >= self.per_address:
            return Refusal("address_throttled", max(1, int(address_ttl)))
        if by_account is not None and int(by_account) >= self.per_account and not known:
            return Refusal("account_locked", max(1, int(account_ttl)))
        return None

    def failed(self, lookup: str, address: str) -> None:
        """Count a failed login against the address and the account."""
        pipe = self.cache.pipeline(transaction=False)
        # the address's window starts at its first failure (INCR keeps the expiry)
        pipe.set(self._address_key(address), 0, ex=self.window, nx=True)
        pipe.incr(self._address_key(address))
        pipe.incr(self._account_key(lookup))
        pipe.expire(self._account_key(lookup), self.window)  # the lock ends a window after
        pipe.execute()

    def succeeded(self, lookup: str, address: str) -> None:
        """Clear the account's failures and remember the address as the account's."""
        pipe = self.cache.pipeline(transaction=False)
        pipe.delete(self._account_key(lookup))
        pipe.sadd(self._known_key(lookup), self._known_member(lookup, address))
        pipe.expire(self._known_key(lookup), _KNOWN_SECONDS)
        pipe.execute()

    def release(self, lookup: str) -> bool:
        """An operator's release of an account's lock; whether there was one."""
        return bool(self.cache.delete(self._account_key(lookup)))
