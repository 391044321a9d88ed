"""``flightbook projections ...``: status, rebuild, dead letters.

Progress and errors go to stderr; tables and listings to stdout.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from flightbook.contracts.readmodels import READ_MODELS

if TYPE_CHECKING:
    import argparse

    from flightbook.config.settings import Settings

__all__ = ("add_projection_commands", "verify_read_models")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _with_stack(settings: Settings) -> Settings:
    """The settings, with the local stack's URLs for the servers not configured."""
    if settings.postgres_url and settings.mongo_url and settings.redis_url:
        return settings
    from flightbook.stack.launcher import LocalStack, settings_urls

    return settings.with_urls(**settings_urls(LocalStack(settings).status()))


def _cmd_status(settings: Settings, _args: argparse.Namespace) -> int:
    from flightbook.projections.services import open_services
    from flightbook.projections.tools.status import format_status, read_model_status

    with open_services(_with_stack(settings), pool_size=2, name="projections-status") as services:
        print(format_status(read_model_status(services.progress, services.reader)))
    return 0


def _cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    from flightbook.projections.services import open_services
    from flightbook.projections.tools.rebuild import rebuild

    with open_services(_with_stack(settings), name="projections-rebuild") as services:
        services.progress.ensure_indexes()
        version = rebuild(
            services,
            args.read_model,
            say=_say,
            grace_seconds=args.grace_seconds,
            keep_old=args.keep_old,
            force=args.force,
        )
    print(f"{args.read_model}: version {version} is active")
    return 0


def _cmd_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    from flightbook.projections.services import open_services
    from flightbook.projections.tools.deadletters import format_letters

    with open_services(_with_stack(settings), pool_size=1, name="projections-letters") as services:
        letters = services.progress.dead_letters(args.read_model, pending=not args.all)
        print(format_letters(letters))
    return 0


def _cmd_replay_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    from flightbook.projections.services import open_services
    from flightbook.projections.tools.deadletters import replay_dead_letters

    with open_services(_with_stack(settings), name="projections-replay") as services:
        outcome = replay_dead_letters(services, read_model=args.read_model, say=_say)
    _say(f"{outcome.replayed} replayed, {outcome.failed} still failing")
    return 1 if outcome.failed else 0


def verify_read_models(settings: Settings, *, postgres_url: str, limit: int = 200) -> int:
    """``flightbook audit verify``: print every difference; 1 if there is any, else 0."""
    import msgspec
    import pymongo
    import redis

    from flightbook.config.settings import require
    from flightbook.projections.tools.verify import compare_read_models, replay_read_models

    settings = _with_stack(settings)
    _say("replaying the event store in memory...")
    expected = replay_read_models(
        msgspec.structs.replace(settings, postgres_url=postgres_url), say=_say
    )
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        require(settings.mongo_url, "mongo_url"), serverSelectionTimeoutMS=5000, tz_aware=True
    )
    cache = redis.Redis.from_url(require(settings.redis_url, "redis_url"))
    try:
        differences = compare_read_models(
            expected, client[settings.mongo_database], cache, say=_say
        )
    finally:
        cache.close()
        client.close()
    documents = sum(len(docs) for docs in expected.documents.values())
    replayed = ", ".join(f"{c} up to position {p}" for c, p in sorted(expected.heads.items()))
    for difference in differences[:limit]:
        print(difference)
    if len(differences) > limit:
        print(f"... and {len(differences) - limit} more")
    _say(
        f"{documents} documents and {len(expected.hashes)} Redis hashes expected ({replayed}); "
        f"{len(differences)} difference(s)"
    )
    return 1 if differences else 0


def add_projection_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``flightbook projections ...`` to the top-level parser's subcommands."""
    projections = sub.add_parser("projections", help="the projection workers' read models")
    verbs = projections.add_subparsers(dest="verb", required=True, metavar="VERB")

    status = verbs.add_parser("status", help="versions, watermarks, lag and dead letters")
    status.set_defaults(handler=_cmd_status)

    rebuild = verbs.add_parser(
        "rebuild", help="rebuild a read model into a new version and switch to it"
    )
    rebuild.add_argument("read_model", choices=READ_MODELS)
    rebuild.add_argument(
        "--grace-seconds",
        type=float,
        default=3.0,
        help="wait this long after the switch before dropping the old version (default 3;"
        " readers re-read the active version every second)",
    )
    rebuild.add_argument("--keep-old", action="store_true", help="do not drop the old version")
    rebuild.add_argument(
        "--force", action="store_true", help="start over even if a build is marked as running"
    )
    rebuild.set_defaults(handler=_cmd_rebuild)

    workers = ("bookings", "flights")
    letters = verbs.add_parser("dead-letters", help="list the dead letters")
    letters.add_argument("--read-model", choices=workers)
    letters.add_argument("--all", action="store_true", help="include those already replayed")
    letters.set_defaults(handler=_cmd_dead_letters)

    replay = verbs.add_parser("replay-dead-letters", help="apply the dead letters again")
    replay.add_argument("--read-model", choices=workers)
    replay.set_defaults(handler=_cmd_replay_dead_letters)
