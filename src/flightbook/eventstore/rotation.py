"""Rotating the key-encryption key (KEK): rewrap the data keys, never touch the event log.

:func:`rotate_kek` makes a new KEK current (in the KEK file) and rewraps, in batches,
every live data key that another KEK wraps; legacy raw keys (``pii.subject_keys.key``)
are wrapped on the way, so afterwards no raw key is left in the database. A key is
rewrapped iff its ``kek_id`` is not the current one, so a rotation that stopped (crash,
Ctrl-C) resumes where it was when run again: it then makes no new KEK. The old KEKs stay
in the file, to unwrap what was not rewrapped yet, until :func:`retire_old_keks`, which
refuses while any key still uses one.

Sealed values name their data key, not the KEK, so no event changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from flightbook.config.settings import Settings
    from flightbook.eventstore.keks import RotatableKeyEncryptionKeys
    from flightbook.eventstore.pii import DataKeys

__all__ = (
    "KekRotationError",
    "RotationResult",
    "retire_old_keks",
    "rotate_kek",
    "run_rotation",
)

DEFAULT_BATCH = 500
_IDLE_BATCHES = 3  # batches in a row in which nothing could be rewrapped: give up


class KekRotationError(RuntimeError):
    """The rotation cannot go on, or old KEKs cannot be retired yet (one line, no key)."""


@dataclass(frozen=True)
class RotationResult:
    """What a rotation did: the current KEK, whether it was made now, keys rewrapped."""

    kek_id: str
    new: bool
    rewrapped: int
    remaining: int  # keys still under an older KEK or raw (0 unless it stopped early)


def _quiet(_line: str) -> None:
    pass


def rotate_kek(
    keys: DataKeys,
    keks: RotatableKeyEncryptionKeys,
    *,
    batch_size: int = DEFAULT_BATCH,
    say: Callable[[str], None] = _quiet,
    stop_after_batches: int | None = None,
) -> RotationResult:
    """Make a new KEK current (unless resuming) and rewrap every key under another one.

    Args:
        keys: where the data keys are.
        keks: the KEK file (gains the new KEK; keeps the old ones).
        batch_size: keys rewrapped per transaction.
        say: progress lines (stderr for the CLI).
        stop_after_batches: stop after that many batches (to test resuming).

    Raises:
        RotationRunningError: another rotation runs now.
        KeyEncryptionKeyError: a key is wrapped by a KEK that is not in the file.
    """
    with keys.exclusive():
        before = keys.counts(keks.current_id)
        new = before.under_other_kek == 0
        if new:
            kek_id = keks.add_current()
            say(f"key-encryption key {kek_id} is now current; rewrapping {before.live} key(s)")
        else:
            kek_id = keks.current_id
            say(
                f"resuming: {before.under_other_kek} key(s) still under an older "
                f"key-encryption key; rewrapping under {kek_id}"
            )
        total = _pending(keys, kek_id)
        done = batches = idle = 0
        while stop_after_batches is None or batches < stop_after_batches:
            batch = keys.not_under(kek_id, batch_size)
            if not batch:
                break
            changes = []
            for old in batch:
                raw = (
                    old.material
                    if old.kek_id is None
                    else keks.unwrap(old.kek_id, old.ref, old.material)
                )
                wrapped_by, wrapped = keks.wrap(old.ref, raw)
                if wrapped_by != kek_id:
                    raise KekRotationError(
                        f"the key-encryption key file changed during the rotation "
                        f"(current is now {wrapped_by}); run rotate-kek again"
                    )
                changes.append((old, wrapped_by, wrapped))
            replaced = keys.replace(changes)
            idle = 0 if replaced else idle + 1
            if idle >= _IDLE_BATCHES:  # keys that keep changing under it: never spin
                raise KekRotationError("keys keep changing during the rotation; run it again")
            done += replaced
            batches += 1
            say(f"rewrapped {done} of {max(total, done)} key(s)")
        remaining = _pending(keys, kek_id)
    if remaining:
        say(f"stopped with {remaining} key(s) still under an older key-encryption key")
    else:
        say(
            f"every key is under {kek_id}; the old key-encryption keys stay in the file "
            "until rotate-kek --retire-old"
        )
    return RotationResult(kek_id=kek_id, new=new, rewrapped=done, remaining=remaining)


def _pending(keys: DataKeys, kek_id: str) -> int:
    counts = keys.counts(kek_id)
    return counts.under_other_kek + counts.raw


def retire_old_keks(
    keys: DataKeys, keks: RotatableKeyEncryptionKeys, *, say: Callable[[str], None] = _quiet
) -> list[str]:
    """Drop every KEK but the current one from the file; return the ids dropped.

    Raises:
        KekRotationError: some key is still wrapped by an older KEK.
    """
    with keys.exclusive():
        current = keks.current_id
        still = keys.counts(current).under_other_kek
        if still:
            raise KekRotationError(
                f"{still} key(s) still use an older key-encryption key; "
                "run `flightbook privacy rotate-kek` first (it resumes)"
            )
        retired = keks.retire_others()
    say(
        f"retired {len(retired)} old key-encryption key(s); {current} is the only one"
        if retired
        else f"nothing to retire: {current} is the only key-encryption key"
    )
    return retired


def run_rotation(
    settings: Settings,
    postgres_url: str,
    *,
    retire_old: bool,
    batch_size: int = DEFAULT_BATCH,
    say: Callable[[str], None] = _quiet,
) -> int:
    """``flightbook privacy rotate-kek [--retire-old]`` on the event store at ``postgres_url``.

    Prints one summary line on stdout; progress goes to ``say``. Returns the exit code.
    """
    from psycopg_pool import ConnectionPool

    from flightbook.eventstore.keks import keks_from_settings
    from flightbook.eventstore.pii import PostgresDataKeys

    keks = keks_from_settings(settings)
    with ConnectionPool(postgres_url, min_size=1, max_size=2, name="rotate-kek") as pool:
        keys = PostgresDataKeys(pool)
        if retire_old:
            retired = retire_old_keks(keys, keks, say=say)
            print(f"retired {len(retired)} key-encryption key(s); current {keks.current_id}")
            return 0
        result = rotate_kek(keys, keks, batch_size=batch_size, say=say)
    print(
        f"rewrapped {result.rewrapped} key(s) under key-encryption key {result.kek_id} "
        f"({'new' if result.new else 'resumed'}); {result.remaining} left"
    )
    return 0 if result.remaining == 0 else 1
