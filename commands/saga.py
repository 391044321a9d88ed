"""Composition root of the booking saga process (``compose.yaml`` service ``saga``)."""

from flightbook.bootstrap import run

run("saga")
