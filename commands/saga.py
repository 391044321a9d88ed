"""Composition root of the booking saga process (``compose.yaml`` service ``saga``)."""

from flightbook.bootstrap import build_saga, load_settings, run_until_signalled
from flightbook.worker_http import OpsServer

settings = load_settings("saga")
saga, close = build_saga(settings)
ops = OpsServer(
    host=settings.host, port=settings.saga_http_port, registry=saga.registry, ready=saga.ready
).start()
try:
    run_until_signalled("saga", saga.run, saga.stop)
finally:
    ops.stop()
    close()
