"""Search every store of the system for known strings, as raw bytes, in their common encodings.

Used by the personal-data tests: after an erasure, a customer's name, email and payment
token must occur nowhere - not in a PostgreSQL table of any schema, a MongoDB collection,
a Redis key or value, a Kafka message, a process log or an audit export.

A :class:`Needles` holds the strings and the encodings they are searched in (UTF-8, JSON
escapes, URL encoding, hex as PostgreSQL renders ``bytea``, base64 at each alignment,
UTF-16); textual encodings are matched ignoring ASCII case. Each ``scan_*`` function
returns :class:`Finding`\\ s (empty: nothing found).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymongo
import redis
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from psycopg import sql

__all__ = (
    "Finding",
    "Needles",
    "scan_files",
    "scan_kafka",
    "scan_mongo",
    "scan_postgres",
    "scan_redis",
)


@dataclass(frozen=True)
class Finding:
    """One known string found: in which store, where in it, which string, in which encoding."""

    store: str
    place: str
    label: str
    encoding: str

    def __str__(self) -> str:
        return f"{self.store}: {self.place}: {self.label} ({self.encoding})"


def _base64_forms(data: bytes) -> Iterator[bytes]:
    """The base64 characters that depend only on ``data``, at each of the three alignments."""
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data)
        start = (0, 2, 3)[offset]
        end = (offset + len(data)) // 3 * 4
        if end - start >= 8:  # shorter runs would match by chance
            yield encoded[start:end]


class Needles:
    """The strings a scan looks for, each under a label saying what it is.

    Args:
        strings: label -> plaintext, e.g. ``{"the passenger's email": "zoe@example.com"}``,
            or label -> bytes (key material: searched raw, as hex and as base64).
    """

    def __init__(self, strings: Mapping[str, str | bytes]) -> None:
        self.strings = dict(strings)
        self._textual: list[tuple[bytes, str, str]] = []  # (lowered needle, label, encoding)
        self._exact: list[tuple[bytes, str, str]] = []
        for label, text in self.strings.items():
            assert len(text) >= 5, f"too short to search for without false alarms: {label}"
            if isinstance(text, bytes):
                raw = text
                forms = {"raw bytes": raw, "hex": raw.hex().encode()}
            else:
                raw = text.encode()
                forms = {
                    "utf-8": raw,
                    "json-escaped": json.dumps(text)[1:-1].encode(),
                    "url-encoded": urllib.parse.quote(text).encode(),
                    "form-encoded": urllib.parse.quote_plus(text).encode(),
                    "hex": raw.hex().encode(),
                    "utf-16-le": text.encode("utf-16-le"),
                    "utf-16-be": text.encode("utf-16-be"),
                }
            seen: set[bytes] = set()
            for encoding, form in forms.items():
                if form.lower() not in seen:
                    seen.add(form.lower())
                    self._textual.append((form.lower(), label, encoding))
            for form in _base64_forms(raw):
                self._exact.append((form, label, "base64"))
                urlsafe = form.replace(b"+", b"-").replace(b"/", b"_")
                if urlsafe != form:
                    self._exact.append((urlsafe, label, "base64url"))

    def find(self, store: str, place: str, data: bytes) -> list[Finding]:
        """Every needle in ``data`` (and in it decompressed, when it is zlib data)."""
        found = self._find(store, place, data)
        if data[:1] == b"\x78":  # zlib's header: a compressed value (e.g. an event's state)
            try:
                inflated = zlib.decompress(data)
            except zlib.error:
                pass
            else:
                found += self._find(store, place + " (zlib)", inflated)
        return found

    def _find(self, store: str, place: str, data: bytes) -> list[Finding]:
        lowered = data.lower()
        found = [
            Finding(store, place, label, encoding)
            for needle, label, encoding in self._textual
            if needle in lowered
        ]
        found += [
            Finding(store, place, label, encoding)
            for needle, label, encoding in self._exact
            if needle in data
        ]
        return found


def _as_bytes(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def postgres_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, str]]:
    """Every table (plain, partitioned, materialized view) of every non-system schema."""
    rows = conn.execute(
        """SELECT n.nspname, c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'm')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
        ORDER BY 1, 2"""
    ).fetchall()
    return [(str(schema), str(table)) for schema, table in rows]


def scan_postgres(url: str, needles: Needles) -> tuple[list[Finding], list[str]]:
    """Every row of every table of the database at ``url``; the findings and the tables read.

    Each column is read on its own: ``bytea`` as its raw bytes, anything else as its text
    rendering (``jsonb`` as JSON text), so no quoting of a row literal hides a value.
    """
    found: list[Finding] = []
    with psycopg.connect(url) as conn:
        tables = postgres_tables(conn)
        for schema, table in tables:
            columns = conn.execute(
                """SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum""",
                (schema, table),
            ).fetchall()
            if not columns:
                continue
            selected = sql.SQL(", ").join(
                sql.Identifier(str(name))
                if kind == "bytea"
                else sql.SQL("{}::text").format(sql.Identifier(str(name)))
                for name, kind in columns
            )
            query = sql.SQL("SELECT {} FROM {}.{}").format(
                selected, sql.Identifier(schema), sql.Identifier(table)
            )
            with conn.cursor() as cursor:
                cursor.execute(query)
                for number, row in enumerate(cursor):
                    for (name, _), value in zip(columns, row, strict=True):
                        place = f"{schema}.{table} row {number} column {name}"
                        found += needles.find("postgresql", place, _as_bytes(value))
    return found, [f"{schema}.{table}" for schema, table in tables]


def scan_mongo(
    database: pymongo.database.Database[dict[str, object]], needles: Needles
) -> tuple[list[Finding], list[str]]:
    """Every document of every collection, as its raw BSON; the findings and the collections."""
    raw = CodecOptions(document_class=RawBSONDocument)
    found: list[Finding] = []
    names = sorted(database.list_collection_names())
    for name in names:
        collection: Any = database.get_collection(name, codec_options=raw)
        for document in collection.find({}):
            place = f"{name} _id={document.get('_id')!r}"
            found += needles.find("mongodb", place, document.raw)
        for index in database[name].list_indexes():
            found += needles.find(
                "mongodb", f"{name} index", json.dumps(index, default=str).encode()
            )
    return found, names


def _redis_values(client: redis.Redis, key: bytes) -> Iterator[bytes]:
    reader: Any = client  # redis-py's answers are typed for its async client as well
    kind = _as_bytes(reader.type(key)).decode()
    if kind == "string":
        yield _as_bytes(reader.get(key))
    elif kind == "hash":
        for field, value in reader.hgetall(key).items():
            yield _as_bytes(field) + b"=" + _as_bytes(value)
    elif kind == "list":
        yield from (_as_bytes(v) for v in reader.lrange(key, 0, -1))
    elif kind == "set":
        yield from (_as_bytes(v) for v in reader.smembers(key))
    elif kind == "zset":
        for member, _score in reader.zrange(key, 0, -1, withscores=True):
            yield _as_bytes(member)
    elif kind == "stream":
        for entry_id, fields in reader.xrange(key):
            pairs = (_as_bytes(k) + b"=" + _as_bytes(v) for k, v in fields.items())
            yield _as_bytes(entry_id) + b" " + b" ".join(pairs)
    elif kind != "none":  # a type this scan cannot read is a failure, not a pass
        raise AssertionError(f"redis key {key!r} has a type the scan cannot read: {kind}")


def scan_redis(
    client: redis.Redis, needles: Needles, *, match: str = "*"
) -> tuple[list[Finding], int]:
    """Every key (its name and its value, whatever the type) matching ``match``.

    Returns the findings and how many keys were read.
    """
    found: list[Finding] = []
    keys = 0
    for key in client.scan_iter(match=match, count=1000):
        keys += 1
        name = _as_bytes(key)
        found += needles.find("redis", f"key name {name!r}", name)
        for value in _redis_values(client, name):
            found += needles.find("redis", f"key {name!r}", value)
    return found, keys


def scan_kafka(bootstrap: str, topic_prefix: str, needles: Needles) -> tuple[list[Finding], int]:
    """Every message (key, value, headers) of every topic whose name starts with ``topic_prefix``.

    Each partition is read from its beginning to its high watermark. Returns the findings
    and how many messages were read.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"scan-{topic_prefix}",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    found: list[Finding] = []
    read = 0
    try:
        metadata = consumer.list_topics(timeout=10)
        ends: dict[tuple[str, int], int] = {}
        for topic, described in metadata.topics.items():
            if not topic.startswith(topic_prefix):
                continue
            for partition in described.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                if high > low:
                    ends[(topic, partition)] = high
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
        done: set[tuple[str, int]] = set()
        idle = 0
        while len(done) < len(ends) and idle < 50:
            messages = consumer.consume(num_messages=500, timeout=0.2)
            idle = 0 if messages else idle + 1
            for message in messages:
                if message.error() is not None:
                    continue
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                assert topic is not None
                assert partition is not None
                assert offset is not None
                read += 1
                place = f"{topic}[{partition}]@{offset}"
                data = _as_bytes(message.key()) + b"\n" + _as_bytes(message.value())
                headers: Any = message.headers() or []
                for header, value in headers.items() if isinstance(headers, dict) else headers:
                    data += b"\n" + str(header).encode() + b"=" + _as_bytes(value)
                found += needles.find("kafka", place, data)
                if offset + 1 >= ends[(topic, partition)]:
                    done.add((topic, partition))
        missing = set(ends) - done
        assert not missing, f"kafka partitions not read to their end: {sorted(missing)}"
    finally:
        consumer.close()
    return found, read


def scan_files(paths: Iterable[Path], needles: Needles, *, store: str) -> list[Finding]:
    """Every byte of each file (logs, exports)."""
    found: list[Finding] = []
    for path in paths:
        found += needles.find(store, str(path.name), path.read_bytes())
    return found
