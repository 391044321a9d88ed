"""Composition root of the auditor process: seals the hash chain (``compose.yaml`` ``auditor``)."""

from flightbook.bootstrap import run

run("auditor")
