"""Redis adapter of the projection port: version-guarded hashes written by one Lua script.

The script compares the stored ``_v`` with the new one and writes the whole hash in the
same step, so two workers (or a worker and a rebuild) can never put an older state over
a newer one, and publishes the new ``_v`` on a channel named like the key (and the write's
``announce`` messages on their channels). Every batch goes out in one pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    import redis

    from flightbook.projections.ports import HashWrite

__all__ = ("RedisHashes",)

_PUT_GUARDED = """
local current = redis.call('HGET', KEYS[1], '_v')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
local fields = 3 + 2 * tonumber(ARGV[2])
redis.call('HSET', KEYS[1], '_v', ARGV[1], unpack(ARGV, fields))
redis.call('PUBLISH', KEYS[1], ARGV[1])
for i = 3, fields - 1, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return 1
"""
# ARGV = [new _v, n, channel1, message1, ..., channel_n, message_n, field1, value1, ...]:
# HSET key _v <v> field1 value1 ... The write is announced on a channel named like the key
# (GET /bookings/{id}/events listens there) and on the n channels given (a customer's, for
# WebSocket /ws/bookings), after the documents of the batch were written, so what it
# announces can be read. Nothing is announced when the guard refuses the write.

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisHashes:
    """Hashes and keys of the ``redis`` read model.

    Args:
        client: A Redis client. Owned by the caller.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._put = client.register_script(_PUT_GUARDED)

    def put_guarded(self, writes: Sequence[HashWrite]) -> int:
        if not writes:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for write in writes:
            args: list[str] = [write.fields["_v"], str(len(write.announce))]
            for channel, message in write.announce:
                args += [channel, message]
            for field, value in write.fields.items():
                if field != "_v":
                    args += [field, value]
            self._put(keys=[write.key], args=args, client=pipe)
        return sum(int(result) for result in pipe.execute())

    def get(self, key: str) -> dict[str, str] | None:
        raw = self._client.hgetall(key)
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    def get_many(self, keys: Sequence[str], *, chunk: int = 1000) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(keys), chunk):
            part = keys[start : start + chunk]
            pipe = self._client.pipeline(transaction=False)
            for key in part:
                pipe.hgetall(key)
            for key, raw in zip(part, pipe.execute(), strict=True):
                if raw:
                    found[key] = {_text(k): _text(v) for k, v in raw.items()}
        return found

    def delete(self, keys: Sequence[str]) -> None:
        if keys:
            self._client.delete(*keys)

    def keys(self, prefix: str) -> list[str]:
        pattern = prefix.translate(_GLOB_SPECIAL) + "*"
        return sorted(_text(k) for k in self._client.scan_iter(match=pattern, count=1000))

    def delete_prefix(self, prefix: str) -> int:
        doomed = self.keys(prefix)
        for start in range(0, len(doomed), 1000):
            self._client.delete(*doomed[start : start + 1000])
        return len(doomed)
