"""``flightbook audit ...``: the auditors' commands. They read PostgreSQL directly, never Kafka."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import uuid
from typing import TYPE_CHECKING, Any, TextIO

import msgspec

from flightbook.audit.integrity import Sealer, check_chain
from flightbook.audit.log import AuditRecord, EventLog
from flightbook.audit.privacy import mask_payment_token
from flightbook.audit.state import state_as_of
from flightbook.eventstore.contexts import CONTEXT_NAMES
from flightbook.eventstore.pii import ERASED, is_sealed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from flightbook.config.settings import Settings

__all__ = ("add_audit_commands", "add_privacy_export", "audit_url")

_HIDDEN = "[sealed personal data]"
_CREDENTIAL_FIELD = "payment_token"  # the field of Booking.Requested that holds a credential


class AuditUsageError(ValueError):
    """The command line asks for something that cannot be done."""


def audit_url(settings: Settings) -> str:
    """The auditors' PostgreSQL URL: the read-only one, the configured one, or the local stack's."""
    if settings.audit_postgres_url:
        return settings.audit_postgres_url
    from flightbook.stack.launcher import postgres_url

    return postgres_url(
        settings, set_one_of="FLIGHTBOOK_POSTGRES_URL (or FLIGHTBOOK_AUDIT_POSTGRES_URL)"
    )


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an aggregate id (a UUID): {text!r}") from None


def _moment(text: str) -> dt.datetime | int:
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time or a position: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"a time needs a UTC offset, e.g. {text}Z")
    return moment.astimezone(dt.UTC)


def add_audit_commands(sub: argparse._SubParsersAction[Any]) -> None:
    audit = sub.add_parser("audit", help="auditors' commands over the event store")
    verbs = audit.add_subparsers(dest="audit_command", required=True, metavar="VERB")

    history = verbs.add_parser("history", help="every event of one aggregate, with metadata")
    history.add_argument("aggregate_id", type=_uuid)
    history.add_argument("--format", choices=["table", "json"], default="table")
    history.add_argument(
        "--show-personal-data",
        action="store_true",
        help="open sealed personal data (needs --token with role auditor)",
    )
    history.add_argument("--token", help="an auditor's JWT (or FLIGHTBOOK_AUDIT_TOKEN)")
    history.set_defaults(handler=_history)

    state = verbs.add_parser("state", help="an aggregate's state as of a time or position")
    state.add_argument("aggregate_id", type=_uuid)
    state.add_argument(
        "--as-of",
        type=_moment,
        required=True,
        help="RFC 3339 time (2026-12-24T10:00:00Z) or a log position",
    )
    state.set_defaults(handler=_state)

    export = verbs.add_parser("export", help="events as JSON lines, streaming")
    export.add_argument("--from-position", type=int, default=1)
    export.add_argument("--to-position", type=int)
    export.add_argument(
        "--context",
        choices=sorted(CONTEXT_NAMES),
        action="append",
        help="repeat for several; default: all",
    )
    export.add_argument("--output", help="a file instead of stdout")
    export.set_defaults(handler=_export)

    trace = verbs.add_parser("trace", help="everything one request caused, in order")
    trace.add_argument("correlation_id")
    trace.add_argument("--format", choices=["table", "json"], default="table")
    trace.set_defaults(handler=_trace)

    integrity = verbs.add_parser("integrity", help="check the hash chain over the logs")
    integrity.add_argument(
        "--seal",
        action="store_true",
        help="seal new events first (normally the auditor process does)",
    )
    integrity.set_defaults(handler=_integrity)

    verify = verbs.add_parser(
        "verify",
        help="rebuild every read model in memory from the event store and compare it with "
        "MongoDB and Redis; exit 1 on any difference",
    )
    verify.add_argument("--limit", type=int, default=200, help="differences shown at most")
    verify.set_defaults(handler=_verify)


def add_privacy_export(verbs: argparse._SubParsersAction[Any]) -> None:
    """``flightbook privacy export <customer id> [--output F]`` (under the ``privacy`` group)."""
    export = verbs.add_parser(
        "export",
        help="everything held about one customer as JSON (a data-subject access request)",
    )
    export.add_argument("customer_id", help="the customer (the sub of their tokens)")
    export.add_argument(
        "--output", help="a file instead of stdout (created readable by its owner only)"
    )
    export.set_defaults(handler=_privacy_export)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _row(record: AuditRecord) -> str:
    return (
        f"{record.context:<9} {record.position:>8}  v{record.aggregate_version:<3} "
        f"{record.occurred_at.isoformat():<32} {record.type:<32} {record.actor:<12} "
        f"corr={record.correlation_id} cause={record.causation_id}\n"
        f"{'':>20}{json.dumps(record.payload, sort_keys=True)}"
    )


def _show(records: list[AuditRecord], fmt: str) -> None:
    out = sys.stdout
    if fmt == "json":
        for record in records:
            out.write(msgspec.json.encode(record).decode() + "\n")
        return
    print(
        f"{'context':<9} {'position':>8}  {'ver':<4} {'occurred_at':<32} {'type':<32} "
        f"{'actor':<12} ids",
        file=out,
    )
    for record in records:
        print(_row(record), file=out)


def _open_personal_data(
    settings: Settings, args: argparse.Namespace, url: str, records: list[AuditRecord]
) -> list[AuditRecord]:
    import os

    from psycopg_pool import ConnectionPool

    from flightbook.eventstore.pii import build_vault
    from flightbook.http.tokens import InvalidTokenError, verify_token

    token = args.token or os.environ.get("FLIGHTBOOK_AUDIT_TOKEN")
    if not token:
        raise AuditUsageError("--show-personal-data needs an auditor's token (--token)")
    try:
        principal = verify_token(settings, token)
    except InvalidTokenError as exc:
        raise AuditUsageError(f"the token was refused: {exc}") from None
    if not principal.has("auditor"):
        raise AuditUsageError("--show-personal-data needs a token with the role auditor")
    opened = []
    with ConnectionPool(url, min_size=1, max_size=1) as pool:
        vault = build_vault(settings, pool)
        for record in records:
            payload = dict(record.payload)
            subject = payload.get("customer_id")
            for key, value in payload.items():
                if is_sealed(value) and subject:
                    plain = vault.open(str(subject), value)
                    if key == _CREDENTIAL_FIELD:
                        payload[key] = plain if plain == ERASED else mask_payment_token(plain)
                        continue  # a credential: never shown whole (audit/privacy.py)
                    try:
                        payload[key] = json.loads(plain)
                    except ValueError:
                        payload[key] = plain  # erased, or not JSON
                elif key == _CREDENTIAL_FIELD and isinstance(value, str):
                    payload[key] = mask_payment_token(value)  # a legacy plain token
            opened.append(msgspec.structs.replace(record, payload=payload))
    return opened


if TYPE_CHECKING:
    Erased = Callable[[str, str], bool]
    """Whether a sealed value of a subject was erased (no KEK needed, nothing opened)."""


def _hidden(key: str, value: object, subject: object, erased: Erased) -> object:
    """A value as shown without opening personal data: sealed ones and tokens hidden.

    A sealed value whose key was erased reads :data:`ERASED`, others stay hidden.
    """
    if is_sealed(value):
        return ERASED if subject and erased(str(subject), str(value)) else _HIDDEN
    if key == _CREDENTIAL_FIELD and isinstance(value, str):
        return mask_payment_token(value)  # a legacy event with the plain token
    return value


@contextlib.contextmanager
def _erasures(url: str) -> Iterator[Erased]:
    """Tell erased sealed values from the data keys' table, each key looked up once."""
    from psycopg_pool import ConnectionPool

    from flightbook.eventstore.pii import PostgresDataKeys, is_erased, key_id_of

    seen: dict[tuple[str, object], bool] = {}
    with ConnectionPool(url, min_size=1, max_size=1, name="audit-erasures") as pool:
        keys = PostgresDataKeys(pool)

        def erased(subject: str, sealed: str) -> bool:
            name = (subject, key_id_of(sealed))
            if name not in seen:
                seen[name] = is_erased(keys, subject, sealed)
            return seen[name]

        yield erased


def _hide_personal_data(records: list[AuditRecord], erased: Erased) -> list[AuditRecord]:
    hidden = []
    for record in records:
        subject = record.payload.get("customer_id")
        payload: dict[str, Any] = {
            k: _hidden(k, v, subject, erased) for k, v in record.payload.items()
        }
        hidden.append(msgspec.structs.replace(record, payload=payload))
    return hidden


def _history(settings: Settings, args: argparse.Namespace) -> int:
    url = audit_url(settings)
    with EventLog(url) as log:
        records = log.history(args.aggregate_id)
    if args.show_personal_data:
        records = _open_personal_data(settings, args, url, records)
    else:
        with _erasures(url) as erased:
            records = _hide_personal_data(records, erased)
    _show(records, args.format)
    return 0


def _state(settings: Settings, args: argparse.Namespace) -> int:
    url = audit_url(settings)
    with EventLog(url) as log:
        state = state_as_of(log, args.aggregate_id, args.as_of)
    with _erasures(url) as erased:
        for key, value in list(state.items()):
            state[key] = _hidden(key, value, state.get("customer_id"), erased)
    print(json.dumps(state, indent=2, sort_keys=True, default=str))
    return 0


def _export(settings: Settings, args: argparse.Namespace) -> int:
    contexts = args.context or list(CONTEXT_NAMES)
    encoder = msgspec.json.Encoder()
    out: TextIO = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115
    written = 0
    url = audit_url(settings)
    try:
        with EventLog(url) as log, _erasures(url) as erased:
            for context in contexts:
                head = (
                    log.head(context)
                    if args.to_position is None
                    else min(args.to_position, log.head(context))
                )
                for notification in log.stream(context, start=args.from_position, stop=head):
                    record = _hide_personal_data([log.record(context, notification)], erased)[0]
                    out.write(encoder.encode(record).decode())
                    out.write("\n")
                    written += 1
                    if written % 10000 == 0:
                        _say(f"exported {written} events ({context} at {notification.id}/{head})")
    finally:
        if out is not sys.stdout:
            out.close()
    _say(f"exported {written} events")
    return 0


def _trace(settings: Settings, args: argparse.Namespace) -> int:
    url = audit_url(settings)
    with EventLog(url) as log, _erasures(url) as erased:
        records = _hide_personal_data(log.trace(args.correlation_id), erased)
    if not records:
        raise AuditUsageError(f"no events with correlation id {args.correlation_id!r}")
    _show(records, args.format)
    return 0


def _privacy_export(settings: Settings, args: argparse.Namespace) -> int:
    from psycopg_pool import ConnectionPool

    from flightbook.audit.privacy import export_subject
    from flightbook.eventstore.pii import build_vault

    customer_id = str(args.customer_id)
    if not customer_id.strip():
        raise AuditUsageError("the customer id is empty")
    url = audit_url(settings)
    with ConnectionPool(url, min_size=1, max_size=1, name="privacy-export") as pool:
        vault = build_vault(settings, pool)
        with EventLog(url) as log:
            document = export_subject(log, vault, customer_id, say=_say)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        _write_private(args.output, text)
        _say(f"wrote {len(document['bookings'])} booking(s) to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _write_private(path: str, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all, readable by its owner only."""
    import os

    partial = f"{path}.partial"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def _progress(context: str) -> Callable[[int], None]:
    return lambda checked: _say(f"{context}: {checked} links checked")


def _integrity(settings: Settings, args: argparse.Namespace) -> int:
    url = audit_url(settings)
    broken = False
    with EventLog(url) as log:
        if args.seal:
            _say(f"sealed {Sealer(url, log).seal_once()} new events")
        for context in CONTEXT_NAMES:
            report = check_chain(url, log, context, progress=_progress(context))
            if report.first_break is not None:
                broken = True
                print(
                    f"{context}: BROKEN at position {report.first_break.position} "
                    f"({report.first_break.problem})"
                )
            else:
                unsealed = max(0, report.log_head - report.sealed_head)
                print(
                    f"{context}: ok, {report.checked} events checked, head link "
                    f"{report.head_link}"
                    + (f", {unsealed} newer events not sealed yet" if unsealed else "")
                )
    return 1 if broken else 0


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from flightbook.projections.tools.cli import verify_read_models

    return verify_read_models(settings, postgres_url=audit_url(settings), limit=args.limit)
