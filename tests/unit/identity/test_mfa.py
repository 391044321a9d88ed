"""TOTP codes within the skew window, once each and in order; recovery codes and their hashes.

Expected codes come from pyotp directly, at fixed times, never from the module under test.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest

from flightbook.identity.mfa import (
    DIGITS,
    ISSUER,
    PERIOD,
    RECOVERY_ALPHABET,
    RECOVERY_CODES,
    looks_like_recovery_code,
    matching_step,
    new_recovery_codes,
    new_secret,
    provisioning_uri,
    recovery_code_hash,
)

pytestmark = pytest.mark.unit

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
STEP = 56_666_667
NOW = STEP * PERIOD + 10.5


def code_at_step(step: int) -> str:
    return pyotp.TOTP(SECRET).at(step * PERIOD)


def test_the_current_code_matches_the_current_step() -> None:
    assert matching_step(SECRET, code_at_step(STEP), now=NOW) == STEP


def test_spaces_in_a_typed_code_are_ignored() -> None:
    code = code_at_step(STEP)
    assert matching_step(SECRET, f" {code[:3]} {code[3:]} ", now=NOW) == STEP


def test_a_code_from_the_previous_step_still_matches_for_clock_skew() -> None:
    assert matching_step(SECRET, code_at_step(STEP - 1), now=NOW) == STEP - 1


def test_a_code_from_the_next_step_matches_for_clock_skew() -> None:
    assert matching_step(SECRET, code_at_step(STEP + 1), now=NOW) == STEP + 1


def test_a_code_from_two_steps_ago_does_not_match() -> None:
    assert matching_step(SECRET, code_at_step(STEP - 2), now=NOW) is None


def test_a_code_cannot_be_replayed_in_its_own_step() -> None:
    assert matching_step(SECRET, code_at_step(STEP), now=NOW, after_step=STEP) is None


def test_an_older_code_is_refused_after_a_newer_one() -> None:
    assert matching_step(SECRET, code_at_step(STEP - 1), now=NOW, after_step=STEP) is None


def test_a_later_code_after_an_earlier_one_works() -> None:
    first = matching_step(SECRET, code_at_step(STEP - 1), now=NOW)
    assert first == STEP - 1
    assert matching_step(SECRET, code_at_step(STEP), now=NOW, after_step=first) == STEP


def test_the_default_time_is_the_clock() -> None:
    assert matching_step(SECRET, pyotp.TOTP(SECRET).now()) is not None


def test_a_wrong_code_is_refused() -> None:
    in_window = {code_at_step(STEP + offset) for offset in (-1, 0, 1)}
    wrong = next(c for c in ("000000", "123456", "999999") if c not in in_window)
    assert matching_step(SECRET, wrong, now=NOW) is None


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param(lambda code: code[:5], id="5-digits"),
        pytest.param(lambda code: code + "0", id="7-digits"),
        pytest.param(lambda code: code[:5] + "a", id="letter"),
        pytest.param(lambda code: "", id="empty"),
        pytest.param(
            lambda code: code.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
            id="non-ascii-digits",
        ),
    ],
)
def test_codes_that_are_not_six_ascii_digits_are_refused(typed: Callable[[str], str]) -> None:
    assert matching_step(SECRET, typed(code_at_step(STEP)), now=NOW) is None


def test_codes_have_six_digits() -> None:
    assert DIGITS == 6
    assert len(code_at_step(STEP)) == DIGITS


def test_a_new_secret_is_32_base32_characters() -> None:
    secret = new_secret()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert secret != new_secret()


def test_the_provisioning_uri_names_the_issuer_and_the_secret() -> None:
    uri = provisioning_uri(SECRET, account_label="ada@example.com")
    assert uri.startswith("otpauth://totp/")
    assert "issuer=flightbook" in uri
    query = parse_qs(urlparse(uri).query)
    assert query["secret"] == [SECRET]
    assert query["issuer"] == [ISSUER]
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.at(NOW) == code_at_step(STEP)


def test_there_are_ten_distinct_recovery_codes() -> None:
    codes = new_recovery_codes()
    assert len(codes) == RECOVERY_CODES == 10
    assert len(set(codes)) == RECOVERY_CODES


def test_recovery_codes_are_two_groups_of_five_unambiguous_characters() -> None:
    group = f"[{RECOVERY_ALPHABET}]{{5}}"
    for code in new_recovery_codes():
        assert re.fullmatch(f"{group}-{group}", code)
        assert not set(code) & set("0O1lI")


def test_recovery_codes_carry_at_least_50_bits() -> None:
    assert len(set(RECOVERY_ALPHABET)) ** 10 >= 2**50


def test_the_recovery_code_hash_is_sha256_of_the_normalised_code() -> None:
    assert recovery_code_hash("abcde-fghjk") == hashlib.sha256(b"abcdefghjk").hexdigest()


@pytest.mark.parametrize("typed", ["abcdefghjk", "ABCDE-FGHJK", " abcde fghjk ", "Ab-cDe fgH-jk"])
def test_the_recovery_code_hash_ignores_case_dashes_and_spaces(typed: str) -> None:
    assert recovery_code_hash(typed) == recovery_code_hash("abcde-fghjk")


def test_different_recovery_codes_hash_differently() -> None:
    assert recovery_code_hash("abcde-fghjk") != recovery_code_hash("abcde-fghjm")


def test_generated_recovery_codes_look_like_recovery_codes() -> None:
    for code in new_recovery_codes():
        assert looks_like_recovery_code(code)
        assert looks_like_recovery_code(code.upper().replace("-", " "))


@pytest.mark.parametrize(
    "text",
    ["", "abcde-fghj", "abcde-fghjkm", "abcde-fghj0", "abcde-fghj1", "abcde-fghjl", "abcde-fghjo"],
)
def test_other_text_does_not_look_like_a_recovery_code(text: str) -> None:
    assert not looks_like_recovery_code(text)
