"""Composition root of the bookings projection worker (``compose.yaml`` ``projection-bookings``).

Consumes the booking topic; maintains ``bookings_v<N>``, Redis ``booking:<id>``, and the
``sales_daily`` and ``funnel_daily`` analytics.
"""

from flightbook.bootstrap import run

run("bookings-projection")
