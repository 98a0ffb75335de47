"""Initial schema: logs, entries, tags, payloads, Merkle nodes, checkpoints, identities.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.String(27)
SPAN_ID = sa.String(36)
IDENTITY = sa.String(100)
KEY = sa.String(60)
DENSE_INDEXES = ("kind", "author", "ts", "status")
SPARSE_INDEXES = ("caused_by", "replay_of", "contract_id", "workflow_id", "flow_id")


def upgrade() -> None:
    op.create_table(
        "logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(48), nullable=False, unique=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "entries",
        sa.Column("log_id", sa.Integer, sa.ForeignKey("logs.id"), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("span_id", SPAN_ID, nullable=False),
        sa.Column("span_hash", sa.LargeBinary, nullable=False),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("received", TS, nullable=False),
        sa.Column("author", IDENTITY, nullable=False),
        sa.Column("kind", sa.String(128), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payload_digest", sa.String(71)),
        sa.Column("caused_by", SPAN_ID),
        sa.Column("replay_of", SPAN_ID),
        sa.Column("contract_id", sa.String(128)),
        sa.Column("workflow_id", sa.String(128)),
        sa.Column("flow_id", sa.String(128)),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("reverted_by", SPAN_ID),
        sa.Column("redacted_by", SPAN_ID),
        sa.PrimaryKeyConstraint("log_id", "seq"),
        sa.UniqueConstraint("log_id", "span_id", name="uq_entries_span_id"),
    )
    for column in DENSE_INDEXES:
        op.create_index(f"ix_entries_{column}", "entries", ["log_id", column, "seq"])
    for column in SPARSE_INDEXES:
        not_null = sa.text(f"{column} IS NOT NULL")
        op.create_index(f"ix_entries_{column}", "entries", ["log_id", column, "seq"],
                        sqlite_where=not_null, postgresql_where=not_null)  # fmt: skip
    op.create_table(
        "span_tags",
        sa.Column("log_id", sa.Integer, nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("log_id", "tag", "seq"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "payloads",
        sa.Column("log_id", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("log_id", "seq"),
    )
    op.create_table(
        "merkle_nodes",
        sa.Column("log_id", sa.Integer, nullable=False),
        sa.Column("node", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("log_id", "node"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "checkpoints",
        sa.Column("log_id", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("log_id", "size"),
    )
    op.create_table(
        "identities",
        sa.Column("id", IDENTITY, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("public_key", KEY, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(48), nullable=False),
        sa.Column("display_name", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("claimed_by", IDENTITY),
        sa.Column("span_id", SPAN_ID, nullable=False),
    )
    op.create_table(
        "identity_keys",
        sa.Column("identity", IDENTITY, nullable=False),
        sa.Column("public_key", KEY, nullable=False),
        sa.Column("valid_from", TS, nullable=False),
        sa.Column("valid_until", TS),
        sa.Column("span_id", SPAN_ID, nullable=False),
        sa.PrimaryKeyConstraint("identity", "public_key"),
    )


def downgrade() -> None:
    for table in ("identity_keys", "identities", "checkpoints", "merkle_nodes", "payloads",
                  "span_tags", "entries", "logs"):  # fmt: skip
        op.drop_table(table)
