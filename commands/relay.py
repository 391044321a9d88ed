"""Composition root of the relay process (``compose.yaml`` service ``relay``)."""

from flightbook.bootstrap import build_relay, load_settings, run_until_signalled
from flightbook.worker_http import OpsServer

settings = load_settings("relay")
relay, close = build_relay(settings)
relay.connect()  # topics and producer before the health endpoint answers (retried if it fails)
ops = OpsServer(
    host=settings.host, port=settings.relay_http_port, registry=relay.registry, ready=relay.ready
).start()
try:
    run_until_signalled("relay", relay.run, relay.stop)
finally:
    ops.stop()
    close()
