"""Key-encryption keys: one contract for the key file and the in-memory KEKs, then the file."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from flightbook.config.settings import Settings, SettingsError
from flightbook.eventstore.keks import (
    FileKeyEncryptionKeys,
    KeyEncryptionKeyError,
    MemoryKeyEncryptionKeys,
    RotatableKeyEncryptionKeys,
    kek_file_path,
    keks_from_settings,
)

pytestmark = pytest.mark.unit

DATA_KEY = bytes(range(32))


@pytest.fixture(params=["file", "memory"])
def keks(request: pytest.FixtureRequest, tmp_path: Path) -> RotatableKeyEncryptionKeys:
    if request.param == "file":
        return FileKeyEncryptionKeys.create(tmp_path / "kek.json")
    return MemoryKeyEncryptionKeys()


# -- the contract -----------------------------------------------------------------------------


def test_a_wrapped_key_unwraps_to_itself_and_does_not_contain_it(
    keks: RotatableKeyEncryptionKeys,
) -> None:
    kek_id, wrapped = keks.wrap("key-1", DATA_KEY)

    assert kek_id == keks.current_id
    assert DATA_KEY not in wrapped
    assert keks.unwrap(kek_id, "key-1", wrapped) == DATA_KEY


def test_a_wrapped_key_is_bound_to_its_key_id(keks: RotatableKeyEncryptionKeys) -> None:
    kek_id, wrapped = keks.wrap("key-1", DATA_KEY)

    with pytest.raises(KeyEncryptionKeyError):
        keks.unwrap(kek_id, "key-2", wrapped)


def test_an_unknown_kek_is_an_error_that_names_no_key(keks: RotatableKeyEncryptionKeys) -> None:
    _, wrapped = keks.wrap("key-1", DATA_KEY)

    with pytest.raises(KeyEncryptionKeyError, match="does not have") as raised:
        keks.unwrap("19990101-00000000", "key-1", wrapped)
    assert DATA_KEY.hex() not in str(raised.value)


def test_after_a_new_current_kek_old_wraps_still_unwrap_and_new_ones_use_it(
    keks: RotatableKeyEncryptionKeys,
) -> None:
    old_id, old = keks.wrap("key-1", DATA_KEY)

    new_id = keks.add_current()
    wrapped_by, new = keks.wrap("key-1", DATA_KEY)

    assert new_id != old_id
    assert wrapped_by == new_id == keks.current_id
    assert set(keks.ids) == {old_id, new_id}
    assert keks.unwrap(old_id, "key-1", old) == DATA_KEY
    assert keks.unwrap(new_id, "key-1", new) == DATA_KEY


def test_retiring_keeps_only_the_current_kek(keks: RotatableKeyEncryptionKeys) -> None:
    old_id, old = keks.wrap("key-1", DATA_KEY)
    new_id = keks.add_current()

    assert keks.retire_others() == [old_id]
    assert keks.ids == (new_id,)
    with pytest.raises(KeyEncryptionKeyError):
        keks.unwrap(old_id, "key-1", old)
    assert keks.retire_others() == []


# -- the key file -----------------------------------------------------------------------------


def test_the_key_file_is_made_private_and_holds_the_documented_shape(tmp_path: Path) -> None:
    path = tmp_path / "state" / "kek.json"

    keks = FileKeyEncryptionKeys.create(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["current"] == keks.current_id
    assert list(document["keys"]) == [keks.current_id]
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_creating_an_existing_key_file_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    first = FileKeyEncryptionKeys.create(path)
    kek_id, wrapped = first.wrap("key-1", DATA_KEY)

    again = FileKeyEncryptionKeys.create(path)

    assert again.unwrap(kek_id, "key-1", wrapped) == DATA_KEY


def test_processes_racing_to_make_the_key_file_all_get_the_same_one(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    barrier = threading.Barrier(8)
    made: list[str] = []

    def make() -> None:
        barrier.wait(10)
        made.append(FileKeyEncryptionKeys.create(path).current_id)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(made) == 8
    assert set(made) == {json.loads(path.read_text())["current"]}


def test_a_process_follows_a_rotation_made_by_another(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    running = FileKeyEncryptionKeys.create(path)
    rotating = FileKeyEncryptionKeys(path)

    new_id = rotating.add_current()
    _, wrapped = rotating.wrap("key-1", DATA_KEY)

    assert running.current_id == new_id
    assert running.unwrap(new_id, "key-1", wrapped) == DATA_KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"current": "a", "keys": {}}',
        '{"current": "a", "keys": {"a": "c2hvcnQ="}}',
        '{"current": "a", "keys": {"a": "not base64!"}}',
    ],
)
def test_a_bad_key_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "kek.json"
    path.write_text(text)

    with pytest.raises(KeyEncryptionKeyError, match="is not"):
        FileKeyEncryptionKeys(path)


def test_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyEncryptionKeyError, match=r"kek\.json"):
        FileKeyEncryptionKeys(tmp_path / "kek.json")


# -- from settings ----------------------------------------------------------------------------

OFF_STACK = {
    "FLIGHTBOOK_HOST": "0.0.0.0",  # noqa: S104 - off the local stack
    "FLIGHTBOOK_POSTGRES_URL": "postgresql://db:5432/fb",
}


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"FLIGHTBOOK_STATE_DIR": str(tmp_path / "state"), **env})


def test_on_the_local_stack_an_unset_kek_file_is_made_in_the_state_dir(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    keks = keks_from_settings(settings)

    assert keks.path == tmp_path / "state" / "kek.json"
    assert kek_file_path(settings) == keks.path
    assert stat.S_IMODE(keks.path.stat().st_mode) == 0o600


def test_off_the_local_stack_an_unset_kek_file_is_refused_naming_the_setting(
    tmp_path: Path,
) -> None:
    with pytest.raises(SettingsError, match=r"^FLIGHTBOOK_KEK_FILE is not set") as raised:
        keks_from_settings(_settings(tmp_path, **OFF_STACK))
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("env", [{}, OFF_STACK])
def test_a_named_kek_file_is_used_and_never_made(tmp_path: Path, env: dict[str, str]) -> None:
    named = tmp_path / "secrets" / "kek.json"

    with pytest.raises(SettingsError, match="FLIGHTBOOK_KEK_FILE"):
        keks_from_settings(_settings(tmp_path, FLIGHTBOOK_KEK_FILE=str(named), **env))
    assert not named.exists()

    made = FileKeyEncryptionKeys.create(named)
    found = keks_from_settings(_settings(tmp_path, FLIGHTBOOK_KEK_FILE=str(named), **env))
    assert found.current_id == made.current_id


def test_the_kek_setting_is_passed_on_to_child_processes(tmp_path: Path) -> None:
    settings = _settings(tmp_path, FLIGHTBOOK_KEK_FILE="/run/kek.json")

    assert settings.to_env()["FLIGHTBOOK_KEK_FILE"] == "/run/kek.json"


def test_flightbook_up_makes_the_kek_file_and_hands_its_path_to_every_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flightbook.stack.supervisor
    from flightbook.cli import main

    for name in [n for n in os.environ if n.startswith("FLIGHTBOOK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FLIGHTBOOK_STATE_DIR", str(tmp_path / "state"))
    given: list[Settings] = []

    def run_system(settings: Settings, **_: object) -> int:
        given.append(settings)
        return 0

    monkeypatch.setattr(flightbook.stack.supervisor, "run_system", run_system)

    assert main(["up"]) == 0

    path = tmp_path / "state" / "kek.json"
    assert [s.kek_file for s in given] == [str(path)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert given[0].to_env()["FLIGHTBOOK_KEK_FILE"] == str(path)
