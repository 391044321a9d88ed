"""The relay: each context's event log, published to Kafka at least once, in order per aggregate.

:func:`~flightbook.relay.relay.relay_round` is one unit of work over narrow ports (STYLE G6);
:class:`~flightbook.relay.process.RelayProcess` is the loop around it (``commands/relay.py``).
"""
