"""Composition root of the command API process (``compose.yaml`` service ``command-api``)."""

from flightbook.bootstrap import run

run("command-api")
