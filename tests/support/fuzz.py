"""Running schemathesis against an API process, bounded (the API fuzz test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pymongo

from flightbook.config.settings import Settings
from flightbook.contracts.readmodels import CHECKPOINTS, CONSUMES, checkpoint_id
from flightbook.http.tokens import mint_token
from tests.support.processes import ROOT

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 40
"""Test cases per operation and phase."""
TIMEOUT_SECONDS = 120.0
"""A run that takes longer is killed and fails the test."""
HOOKS = "tests.support.fuzz_hooks"
CONFIG = Path(__file__).with_name("schemathesis.toml")
BEYOND_ANY_POSITION = 10**18
"""Above every position ``X-Flightbook-After`` can name (at most 18 digits)."""


class FuzzRun(NamedTuple):
    returncode: int
    report: str
    """Schemathesis' output (the failures, with a curl line to reproduce each)."""


def token_for(settings: Settings, subject: str, *roles: str) -> str:
    return mint_token(settings, subject=subject, roles=roles, ttl_seconds=600)


def fuzz(base: str, token: str, *, env: dict[str, str] | None = None) -> FuzzRun:
    """Schemathesis with every check on ``base``'s OpenAPI document, as ``token``."""
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base}/schema/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
    ]
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": HOOKS,
                "FLIGHTBOOK_FUZZ_TOKEN": token,
                **(env or {}),
            },
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout if isinstance(expired.stdout, str) else ""
        return FuzzRun(-1, f"schemathesis ran over {TIMEOUT_SECONDS:.0f}s\n{output}")
    return FuzzRun(done.returncode, done.stdout + done.stderr)


def caught_up_read_models(settings: Settings) -> None:
    """Every read model's checkpoint beyond any position, so that no read waits.

    The query API answers ``X-Flightbook-After`` with 503 until its read models have
    applied the positions; with no projection running they never would.
    """
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(settings.mongo_url)
    with client:
        checkpoints = client[settings.mongo_database][CHECKPOINTS]
        for read_model, contexts in CONSUMES.items():
            for context in contexts:
                key = checkpoint_id(read_model, context)
                checkpoints.replace_one(
                    {"_id": key}, {"_id": key, "low_watermark": BEYOND_ANY_POSITION}, upsert=True
                )
