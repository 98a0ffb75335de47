"""The job engine: job types with their payload schemas, jobs, and the attempts of each.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.String(27)
IDENTITY = sa.String(100)
TENANT = sa.String(48)
JOB_ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "job_types",
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("schema", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", IDENTITY, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "type"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", JOB_ID, primary_key=True),
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("run_at", TS, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("dedupe_key", sa.String(200)),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("backoff_base_s", sa.Float, nullable=False),
        sa.Column("backoff_cap_s", sa.Float, nullable=False),
        sa.Column("timeout_s", sa.Float, nullable=False),
        sa.Column("node", IDENTITY),
        sa.Column("lease_expires", TS),
        sa.Column("cancel_requested", sa.Integer, nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("span_id", sa.String(36), nullable=False),
        sa.Column("attempt_budget", sa.Integer, nullable=False),
    )
    op.create_index("ix_jobs_ready", "jobs", ["tenant", "state", "priority", "run_at"])
    op.create_index("ix_jobs_lease", "jobs", ["state", "lease_expires"])
    op.create_index("ix_jobs_list", "jobs", ["tenant", "state", "created_at"])
    not_null = sa.text("dedupe_key IS NOT NULL")
    op.create_index("uq_jobs_dedupe", "jobs", ["tenant", "dedupe_key"], unique=True,
                    sqlite_where=not_null, postgresql_where=not_null)  # fmt: skip
    op.create_table(
        "job_attempts",
        sa.Column("job_id", JOB_ID, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("node", IDENTITY, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS),
        sa.Column("outcome", sa.String(16)),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("job_id", "attempt"),
    )


def downgrade() -> None:
    for table in ("job_attempts", "jobs", "job_types"):
        op.drop_table(table)
