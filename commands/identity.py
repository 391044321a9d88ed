"""Composition root of the identity API process (``compose.yaml`` service ``identity-api``)."""

from flightbook.bootstrap import run

run("identity-api")
