"""Tools for testing ESSEN in-process and deterministically.

``system(seed=..., bots=..., dashboards=...)`` runs the whole system without
sockets under MockClock; ``System.traffic(rate=..., duration=...)`` offers a
constant message rate for simulated hours (counted in aggregate, a sample
through the whole system); ``deterministic_scheduling(seed)`` fixes Trio's
scheduling order; ``MemoryStore`` is the admin API's store without a database.
"""

from ._determinism import deterministic_scheduling
from .memory_store import MemoryStore
from .system import Dashboard, System, TrafficReport, User, system

__all__ = (
    "Dashboard",
    "MemoryStore",
    "System",
    "TrafficReport",
    "User",
    "deterministic_scheduling",
    "system",
)
