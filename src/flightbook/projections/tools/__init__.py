"""Operator tools of the projections: status, rebuild, verify, dead letters."""
