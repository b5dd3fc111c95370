"""Tools for testing ESSEN in-process and deterministically."""

from ._determinism import deterministic_scheduling

__all__ = ("deterministic_scheduling",)
