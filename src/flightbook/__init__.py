"""flightbook: the backend of a flight booking system, event-sourced CQRS."""

__all__ = ("__version__",)

__version__ = "0.1.0"
