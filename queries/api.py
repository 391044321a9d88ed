"""Composition root of the query API process (``compose.yaml`` service ``query-api``)."""

from flightbook.bootstrap import run

run("query-api")
