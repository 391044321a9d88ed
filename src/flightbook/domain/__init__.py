"""Pure domain model: the Inventory, Booking and Payment aggregates, their values and errors.

No I/O and no clock: commands that depend on "now" take it as a parameter.
"""
