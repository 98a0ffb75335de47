"""The rules engine: versioned rule sets per tenant, spans held for approval, the follow-up outbox.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.String(27)
IDENTITY = sa.String(100)
TENANT = sa.String(48)
UUID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "rule_sets",
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("published_at", TS, nullable=False),
        sa.Column("published_by", IDENTITY, nullable=False),
        sa.Column("span_id", UUID, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "version"),
    )
    op.create_table(
        "rule_state",
        sa.Column("tenant", TENANT, primary_key=True),
        sa.Column("active_version", sa.Integer),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("updated_by", IDENTITY, nullable=False),
        sa.Column("span_id", UUID, nullable=False),
    )
    op.create_table(
        "held_spans",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("span_id", UUID, nullable=False),
        sa.Column("author", IDENTITY, nullable=False),
        sa.Column("kind", sa.String(128), nullable=False),
        sa.Column("span", sa.Text, nullable=False),
        sa.Column("key", sa.String(60), nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("votes", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("decided_at", TS),
        sa.Column("span_ref", UUID, nullable=False),
        sa.Column("reason", sa.Text),
        sa.UniqueConstraint("tenant", "span_id", name="uq_held_spans_span"),
    )
    op.create_index("ix_held_spans_state", "held_spans", ["tenant", "state", "created_at"])
    op.create_index("ix_held_spans_expiry", "held_spans", ["state", "expires_at"])
    op.create_table(
        "rule_outbox",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("trigger", UUID, nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("depth", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", TS, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("outcome", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("done_at", TS),
    )
    op.create_index("ix_rule_outbox_due", "rule_outbox", ["state", "next_at"])
    op.create_index("ix_rule_outbox_trigger", "rule_outbox", ["tenant", "trigger"])


def downgrade() -> None:
    for table in ("rule_outbox", "held_spans", "rule_state", "rule_sets"):
        op.drop_table(table)
