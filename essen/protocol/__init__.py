"""Sans-IO Engine.IO v4 and Socket.IO v5.

Nothing in this package performs I/O, sleeps, or reads a clock: bytes and
packets go in, packets and events come out, and time is an argument (``now``,
seconds on whatever clock the caller uses).  The I/O adapters live in
``essen.realtime``.  A test walks this package's imports to keep it so.
"""
