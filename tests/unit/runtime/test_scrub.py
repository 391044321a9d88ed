"""The scrubber: no token, secret, email, payment token or quoted input survives it."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from flightbook.runtime.logs import configure_logging
from flightbook.runtime.scrub import REDACTED, Scrubber

pytestmark = pytest.mark.unit

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def scrub(**event: object) -> dict[str, object]:
    return dict(Scrubber(secrets=["s3cret-signing-key"])(None, "info", dict(event)))


def test_values_of_sensitive_keys_are_dropped_at_any_depth() -> None:
    event = scrub(
        request={"headers": {"Authorization": "Bearer x"}, "path": "/bookings"},
        passengers=[{"name": "Ada Lovelace"}],
        Payment_Token="tok_ok",
        body=b'{"name": "Ada"}',
    )

    assert event == {
        "request": {"headers": REDACTED, "path": "/bookings"},
        "passengers": REDACTED,
        "Payment_Token": REDACTED,
        "body": REDACTED,
    }


@pytest.mark.parametrize(
    "text",
    [
        f"Bearer {JWT}",
        f"token was {JWT}",
        f"cut: {JWT[:50]}",
        "write to ada.lovelace+x@example.co.uk please",
        "paid with tok_live_4242 today",
        "the key is s3cret-signing-key!",
    ],
)
def test_tokens_emails_payment_tokens_and_secrets_are_redacted_in_any_string(text: str) -> None:
    scrubbed = str(scrub(event=text)["event"])

    for leaked in (JWT[:20], "ada.lovelace", "tok_live_4242", "s3cret-signing-key"):
        assert leaked not in scrubbed


def test_quoted_input_in_exception_text_is_dropped_but_file_lines_stay() -> None:
    traceback = (
        'Traceback (most recent call last):\n  File "/app/x.py", line 3, in f\n'
        "UnicodeDecodeError: 'utf-8' codec can't decode b'Zo\\xeb \\xc5kesson'"
    )

    event = scrub(error="KeyError('Ada Lovelace')", exception=traceback)

    assert event["error"] == f"KeyError('{REDACTED}')"
    assert 'File "/app/x.py", line 3' in str(event["exception"])
    assert "kesson" not in str(event["exception"])


def test_a_logged_exception_has_no_frame_locals_and_no_quoted_input(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: structlog's dict_tracebacks recorded every frame's locals (the token)."""
    configure_logging(log_format="json", secrets=["s3cret-signing-key"])
    authorization = f"Bearer {JWT}"  # a local of the failing frame
    try:
        raise ValueError(f"bad passenger 'Ada Lovelace' with {authorization}")
    except ValueError:
        structlog.get_logger().exception("http.unhandled_error")
    logging.getLogger("uvicorn.error").error("boom", exc_info=ValueError("'Ada Lovelace'"))

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    text = json.dumps(lines)
    assert len(lines) == 2
    assert '"locals"' not in text
    assert JWT[:20] not in text
    assert "Ada Lovelace" not in text
    assert lines[0]["exception"][0]["exc_type"] == "ValueError"


def test_console_output_is_scrubbed_too() -> None:
    stream = io.StringIO()
    configure_logging(log_format="console")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logging.getLogger("litestar").warning("client sent %s", f"Bearer {JWT}")

    assert JWT[:20] not in stream.getvalue()
    assert "client sent Bearer" in stream.getvalue()
