"""The job engine's standing state: schedules, worker nodes, and the stats read model.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.String(27)
IDENTITY = sa.String(100)
TENANT = sa.String(48)
MINUTE = sa.String(16)


def upgrade() -> None:
    op.create_table(
        "job_schedules",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("cron", sa.String(200)),
        sa.Column("interval_s", sa.Float),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("job", sa.Text, nullable=False),
        sa.Column("enabled", sa.Integer, nullable=False),
        sa.Column("next_run_at", TS, nullable=False),
        sa.Column("last_run_at", TS),
        sa.Column("last_job_id", sa.String(36)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", IDENTITY, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("span_id", sa.String(36), nullable=False),
        sa.UniqueConstraint("tenant", "name", name="uq_job_schedules_name"),
    )
    op.create_index("ix_job_schedules_due", "job_schedules", ["enabled", "next_run_at"])
    op.create_table(
        "nodes",
        sa.Column("identity", IDENTITY, primary_key=True),
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("session", sa.String(36), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("queues", sa.Text, nullable=False),
        sa.Column("types", sa.Text),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("running", sa.Integer, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("span_id", sa.String(36), nullable=False),
    )
    op.create_index("ix_nodes_seen", "nodes", ["state", "last_seen"])
    op.create_table(
        "job_stats",
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("minute", MINUTE, nullable=False),
        sa.Column("submitted", sa.BigInteger, nullable=False),
        sa.Column("started", sa.BigInteger, nullable=False),
        sa.Column("succeeded", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.Column("dead", sa.BigInteger, nullable=False),
        sa.Column("cancelled", sa.BigInteger, nullable=False),
        sa.Column("wait_ms", sa.Float, nullable=False),
        sa.Column("run_ms", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "type", "queue", "minute"),
    )
    op.create_index("ix_job_stats_minute", "job_stats", ["minute"])
    op.create_table(
        "job_stats_buckets",
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("minute", MINUTE, nullable=False),
        sa.Column("metric", sa.String(8), nullable=False),
        sa.Column("bucket", sa.Integer, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "type", "queue", "minute", "metric", "bucket"),
    )


def downgrade() -> None:
    for table in ("job_stats_buckets", "job_stats", "nodes", "job_schedules"):
        op.drop_table(table)
