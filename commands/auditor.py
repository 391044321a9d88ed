"""Composition root of the auditor process: seals the hash chain (``compose.yaml`` ``auditor``)."""

from flightbook.audit.sealer_process import SealerProcess
from flightbook.bootstrap import load_settings, run_until_signalled
from flightbook.services import require
from flightbook.worker_http import OpsServer

settings = load_settings("auditor")
sealer = SealerProcess(
    require(settings.postgres_url, "postgres_url"), interval=settings.audit_seal_seconds
)
ops = OpsServer(
    host=settings.host, port=settings.audit_http_port, registry=sealer.registry, ready=sealer.ready
).start()
try:
    run_until_signalled("auditor", sealer.run, sealer.stop)
finally:
    ops.stop()
