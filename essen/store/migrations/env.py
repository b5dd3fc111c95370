"""Alembic's environment for the store's migrations.

ESSEN runs migrations itself at start (``essen.store._migrate``): it opens the
connection, takes the migration lock, and hands the connection over in
``config.attributes["connection"]``, inside a transaction it commits.  The
``alembic`` command line works too, for an operator who wants ``history`` or
``current``: give it the URL with ``-x url=...`` or ``DATABASE_URL``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from alembic import context

from essen.store._engine import EngineSettings, create_engine, normalize_url
from essen.store._schema import metadata

if TYPE_CHECKING:
    import sqlalchemy as sa


def _configure_and_run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode recreates the table,
        # and on PostgreSQL it is a plain ALTER.  One script for both.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run() -> None:
    if context.is_offline_mode():
        raise RuntimeError("ESSEN's migrations run online only (they need the migration lock)")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("give the database with -x url=... or DATABASE_URL")
    engine = create_engine(normalize_url(url), EngineSettings())
    try:
        with engine.connect() as opened:
            _configure_and_run(opened)
            opened.commit()
    finally:
        engine.dispose()


_run()
