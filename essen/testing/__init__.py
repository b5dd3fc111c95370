"""Tools for testing ESSEN in-process and deterministically.

``system(seed=..., bots=..., dashboards=...)`` runs the whole system without
sockets under MockClock; ``deterministic_scheduling(seed)`` fixes Trio's
scheduling order; ``MemoryStore`` is the admin API's store without a database.
"""

from ._determinism import deterministic_scheduling
from .memory_store import MemoryStore
from .system import Dashboard, System, User, system

__all__ = ("Dashboard", "MemoryStore", "System", "User", "deterministic_scheduling", "system")
