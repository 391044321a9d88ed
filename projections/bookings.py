"""Composition root of the bookings projection worker (``flightbook up`` runs it).

Consumes the booking topic; maintains ``bookings_v<N>``, Redis ``booking:<id>``, and the
``sales_daily`` and ``funnel_daily`` analytics.
"""

from flightbook.bootstrap import build_projection_worker, load_settings, run_until_signalled
from flightbook.worker_http import OpsServer

settings = load_settings("bookings-projection")
worker, close = build_projection_worker(settings, "bookings")
ops = OpsServer(
    host=settings.host,
    port=settings.projection_bookings_http_port,
    registry=worker.registry,
    ready=worker.ready,
).start()
try:
    run_until_signalled("bookings-projection", worker.run, worker.stop)
finally:
    ops.stop()
    close()
