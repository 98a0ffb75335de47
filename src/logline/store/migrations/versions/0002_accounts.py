"""Accounts and search: tenants, users, memberships, API keys, sessions, login challenges,
custodial keys; full-text search over span titles; the distinct kinds of each log.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.String(27)
IDENTITY = sa.String(100)
TENANT = sa.String(48)
ROLE = sa.String(16)
TOKEN_ID = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "log_kinds",
        sa.Column("log_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("log_id", "kind"),
        sqlite_with_rowid=False,
    )
    op.execute("INSERT INTO log_kinds (log_id, kind) SELECT DISTINCT log_id, kind FROM entries")
    op.create_table(
        "tenants",
        sa.Column("name", TENANT, primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", IDENTITY, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("identity", IDENTITY, nullable=False, unique=True),
        sa.Column("password_hash", sa.Text),
        sa.Column("instance_admin", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "memberships",
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("identity", IDENTITY, nullable=False),
        sa.Column("role", ROLE, nullable=False),
        sa.Column("granted_at", TS, nullable=False),
        sa.Column("granted_by", IDENTITY, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "identity"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", TOKEN_ID, primary_key=True),
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("identity", IDENTITY, nullable=False),
        sa.Column("role", ROLE, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("revoked_at", TS),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])
    op.create_table(
        "sessions",
        sa.Column("id", TOKEN_ID, primary_key=True),
        sa.Column("identity", IDENTITY, nullable=False),
        sa.Column("tenants", sa.Text, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("refresh_hash", sa.LargeBinary, nullable=False),
        sa.Column("previous_hash", sa.LargeBinary),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
    )
    op.create_index("ix_sessions_identity", "sessions", ["identity"])
    op.create_table(
        "challenges",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("identity", IDENTITY, nullable=False),
        sa.Column("tenants", sa.Text, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "custodial_keys",
        sa.Column("identity", IDENTITY, primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    # Full-text search over titles. Titles are part of the signed body and never change, so the
    # index only ever grows with the log. Neither object is in `schema.metadata`: SQLAlchemy cannot
    # declare them (the schema comparison test skips them by name).
    if op.get_bind().dialect.name == "sqlite":
        # Contentless: the text stays in `entries`; the FTS rowid is log_id << 40 | seq, because
        # the implicit rowid of `entries` may change on VACUUM.
        op.execute(
            "CREATE VIRTUAL TABLE entries_fts USING fts5(title, content='', tokenize='unicode61')"
        )
        op.execute(
            "INSERT INTO entries_fts (rowid, title) SELECT (log_id << 40) | seq, title FROM entries"
        )
        op.execute(
            "CREATE TRIGGER entries_fts_insert AFTER INSERT ON entries BEGIN "
            "INSERT INTO entries_fts (rowid, title) VALUES ((new.log_id << 40) | new.seq, "
            "new.title); END"
        )
    else:
        op.execute("CREATE INDEX entries_fts ON entries USING gin (to_tsvector('simple', title))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER entries_fts_insert")
        op.execute("DROP TABLE entries_fts")
    else:
        op.execute("DROP INDEX entries_fts")
    for table in ("custodial_keys", "challenges", "sessions", "api_keys", "memberships", "users",
                  "tenants", "log_kinds"):  # fmt: skip
        op.drop_table(table)
