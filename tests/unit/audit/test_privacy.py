"""What a data-subject export shows of a payment token: its last four characters, never more."""

from __future__ import annotations

import pytest

from flightbook.audit.privacy import mask_payment_token

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("token", "shown"),
    [
        ("tok_ok", "****k_ok"),
        ("tok_visa_4242424242424242", "****4242"),
        ("12345", "****2345"),
        ("1234", "****"),
        ("", "****"),
    ],
)
def test_a_payment_token_shows_only_its_last_four_characters(token: str, shown: str) -> None:
    assert mask_payment_token(token) == shown


def test_the_mask_does_not_tell_how_long_the_token_is() -> None:
    assert len(mask_payment_token("tok_" + "x" * 200)) == len(mask_payment_token("tok_ok"))
