"""``flightbook bench``: the whole pipeline under load, and the raw limits in the same run."""
