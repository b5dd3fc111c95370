"""Initial schema: admin accounts, hourly rollups, sanitized message log.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "admin_users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name="pk_admin_users"),
        sa.UniqueConstraint("username", name="uq_admin_users_username"),
    )
    op.create_table(
        "hourly_rollups",
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("hour_epoch", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("received", sa.BigInteger, nullable=False),
        sa.Column("answered", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.Column("latency_counts", sa.JSON, nullable=False),
        sa.Column("latency_sum_ms", sa.Float, nullable=False),
        sa.Column("unique_users_estimate", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("instance", "hour_epoch", name="pk_hourly_rollups"),
    )
    op.create_table(
        "message_log",
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("user_pseudonym", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("preview", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=True),
        sa.Column("error_code", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("instance", "id", name="pk_message_log"),
    )
    op.create_index("ix_message_log_at", "message_log", ["at"])
    op.create_index("ix_message_log_user_pseudonym_at", "message_log", ["user_pseudonym", "at"])


def downgrade() -> None:
    op.drop_index("ix_message_log_user_pseudonym_at", table_name="message_log")
    op.drop_index("ix_message_log_at", table_name="message_log")
    op.drop_table("message_log")
    op.drop_table("hourly_rollups")
    op.drop_table("admin_users")
