"""Composition root of the flights projection worker (``compose.yaml`` ``projection-flights``).

Consumes the inventory topic; maintains ``flights_v<N>``, Redis ``seats:<flight id>`` (and
invalidates ``search:`` keys), and the ``load_factor`` analytics.
"""

from flightbook.bootstrap import run

run("flights-projection")
