"""Composition root of the flights projection worker (``flightbook up`` runs it).

Consumes the inventory topic; maintains ``flights_v<N>``, Redis ``seats:<flight id>`` (and
invalidates ``search:`` keys), and the ``load_factor`` analytics.
"""

from flightbook.bootstrap import build_projection_worker, load_settings, run_until_signalled
from flightbook.worker_http import OpsServer

settings = load_settings("flights-projection")
worker, close = build_projection_worker(settings, "flights")
ops = OpsServer(
    host=settings.host,
    port=settings.projection_flights_http_port,
    registry=worker.registry,
    ready=worker.ready,
).start()
try:
    run_until_signalled("flights-projection", worker.run, worker.stop)
finally:
    ops.stop()
    close()
