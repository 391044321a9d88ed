"""Composition root of the relay process (``compose.yaml`` service ``relay``)."""

from flightbook.bootstrap import run

run("relay")
