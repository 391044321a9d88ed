"""The store scanner of the personal-data tests finds what it searches for, in every encoding."""

from __future__ import annotations

import base64
import json
import urllib.parse

import msgspec

from tests.support.scan import Needles


def test_the_scan_finds_each_string_in_each_encoding_it_searches() -> None:
    """A scan that cannot find a thing proves nothing: each encoding is found where it is."""
    search = Needles({"name": "Þórhildur Ægisdóttir", "token": "tok_ok_abcdef123456"})
    name, token = "Þórhildur Ægisdóttir", "tok_ok_abcdef123456"
    samples = {
        "utf-8": name.encode(),
        "json-escaped": json.dumps({"n": name}).encode(),
        "url-encoded": urllib.parse.quote(name).encode(),
        "hex": b"\\x" + name.encode().hex().upper().encode(),
        "utf-16-le": name.encode("utf-16-le"),
        "base64": base64.b64encode(b"xy" + token.encode() + b"z"),
        "msgpack-ish": b"\xa9" + token.upper().encode(),
    }

    found = {
        key: {f.label for f in search.find("test", key, data)} for key, data in samples.items()
    }

    assert found == {
        "utf-8": {"name"},
        "json-escaped": {"name"},
        "url-encoded": {"name"},
        "hex": {"name"},
        "utf-16-le": {"name"},
        "base64": {"token"},
        "msgpack-ish": {"token"},
    }
    assert search.find("test", "nothing", msgspec.json.encode({"n": "Thorhildur"})) == []
