"""How every long-running process runs: its loop, its ops HTTP server, its logs."""
