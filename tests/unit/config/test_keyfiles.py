"""Secret files: atomic writes with their mode, one winner when made, read again on change."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from flightbook.config.keyfiles import ChangedFile, create_once, replace_atomically


def test_a_file_is_made_once_private_and_a_second_maker_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.json"

    create_once(path, b"first")
    create_once(path, b"second")

    assert path.read_bytes() == b"first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["keys.json"]  # no temporary left


def test_a_replacement_keeps_the_mode_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "public.json"
    replace_atomically(path, b"{}", mode=0o644)
    replace_atomically(path, b'{"a": 1}', mode=0o644)

    assert path.read_bytes() == b'{"a": 1}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_file_is_parsed_again_only_after_it_changed(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    replace_atomically(path, b'{"n": 1}')
    watched = ChangedFile(path)

    assert watched.parse_if_changed(json.loads) == {"n": 1}
    assert watched.parse_if_changed(json.loads) is None
    replace_atomically(path, b'{"n": 2}')
    assert watched.parse_if_changed(json.loads) == {"n": 2}
    watched.forget()
    assert watched.parse_if_changed(json.loads) == {"n": 2}


def test_a_file_the_parser_refuses_is_refused_again_at_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    replace_atomically(path, b"not json")
    watched = ChangedFile(path)

    for _ in range(2):
        with pytest.raises(ValueError, match="Expecting value"):
            watched.parse_if_changed(json.loads)
