"""Payments: the payment-gateway port, its adapters and the resilience wrapper around them.

``gateway`` is the port the saga depends on; ``simulated`` (PostgreSQL ledger) and
``memory`` (in-process) are adapters with the same provider semantics; ``resilience``
adds retry with backoff and a circuit breaker around any of them.
"""
