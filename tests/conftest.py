"""Shared fixtures. (Provisional: the session-wide local stack replaces the URL fallbacks.)"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the PostgreSQL server the tests use."""
    return os.environ.get("FLIGHTBOOK_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def isolated_schema(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')
