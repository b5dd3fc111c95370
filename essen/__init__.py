"""ESSEN: real-time monitoring for the ESSEN Messenger bot, on Trio."""

__all__ = ("__version__",)

__version__ = "0.1.0"
