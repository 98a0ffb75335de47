"""The declared schema. Alembic migrations must produce exactly this (a test compares them).

Timestamps are stored as fixed-width RFC 3339 text (`timefmt`), which sorts in time order on every
backend. Merkle nodes are keyed by one integer, `node = level << 56 | index` (see `node_key`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

TS = String(27)
SPAN_ID = String(36)
IDENTITY = String(100)  # the longest LogLine ID is 85 characters
KEY = String(60)

DENSE_INDEXES = ("kind", "author", "ts", "status")
SPARSE_INDEXES = ("caused_by", "replay_of", "contract_id", "workflow_id", "flow_id")

logs = Table(
    "logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(48), nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", TS, nullable=False),
)

entries = Table(
    "entries",
    metadata,
    Column("log_id", Integer, ForeignKey("logs.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("span_id", SPAN_ID, nullable=False),
    Column("span_hash", LargeBinary, nullable=False),
    Column("leaf", LargeBinary, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("ts", TS, nullable=False),
    Column("received", TS, nullable=False),
    Column("author", IDENTITY, nullable=False),
    Column("kind", String(128), nullable=False),
    Column("title", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("payload_digest", String(71)),
    Column("caused_by", SPAN_ID),
    Column("replay_of", SPAN_ID),
    Column("contract_id", String(128)),
    Column("workflow_id", String(128)),
    Column("flow_id", String(128)),
    Column("visibility", String(16), nullable=False),
    Column("tags", Text, nullable=False),
    Column("reverted_by", SPAN_ID),
    Column("redacted_by", SPAN_ID),
    PrimaryKeyConstraint("log_id", "seq"),
    UniqueConstraint("log_id", "span_id", name="uq_entries_span_id"),
)
for _column in DENSE_INDEXES:
    Index(f"ix_entries_{_column}", entries.c.log_id, entries.c[_column], entries.c.seq)
for _column in SPARSE_INDEXES:
    # Most spans leave these links null: partial indexes cost nothing for them on the write path.
    _not_null = entries.c[_column].isnot(None)
    Index(f"ix_entries_{_column}", entries.c.log_id, entries.c[_column], entries.c.seq,
          sqlite_where=_not_null, postgresql_where=_not_null)  # fmt: skip

span_tags = Table(
    "span_tags",
    metadata,
    Column("log_id", Integer, nullable=False),
    Column("tag", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    PrimaryKeyConstraint("log_id", "tag", "seq"),
    sqlite_with_rowid=False,
)

payloads = Table(
    "payloads",
    metadata,
    Column("log_id", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("log_id", "seq"),
)

merkle_nodes = Table(
    "merkle_nodes",
    metadata,
    Column("log_id", Integer, nullable=False),
    Column("node", BigInteger, nullable=False),
    Column("hash", LargeBinary, nullable=False),
    PrimaryKeyConstraint("log_id", "node"),
    sqlite_with_rowid=False,
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("log_id", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    PrimaryKeyConstraint("log_id", "size"),
)

identities = Table(
    "identities",
    metadata,
    Column("id", IDENTITY, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("public_key", KEY, nullable=False),
    Column("status", String(16), nullable=False),
    Column("tenant", String(48), nullable=False),
    Column("display_name", Text),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS),
    Column("claimed_by", IDENTITY),
    Column("span_id", SPAN_ID, nullable=False),
)

identity_keys = Table(
    "identity_keys",
    metadata,
    Column("identity", IDENTITY, nullable=False),
    Column("public_key", KEY, nullable=False),
    Column("valid_from", TS, nullable=False),
    Column("valid_until", TS),
    Column("span_id", SPAN_ID, nullable=False),
    PrimaryKeyConstraint("identity", "public_key"),
)

# The distinct kinds of each log (migration 0002): a kind glob becomes a list of exact kinds,
# each served by `ix_entries_kind`, and a glob that matches no kind costs nothing.
log_kinds = Table(
    "log_kinds",
    metadata,
    Column("log_id", Integer, nullable=False),
    Column("kind", String(128), nullable=False),
    PrimaryKeyConstraint("log_id", "kind"),
    sqlite_with_rowid=False,
)

# --- accounts: who may use the server (migration 0002) --------------------------------------------

ROLE = String(16)
TOKEN_ID = String(32)

tenants = Table(
    "tenants",
    metadata,
    Column("name", String(48), primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("created_by", IDENTITY, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("identity", IDENTITY, nullable=False, unique=True),
    Column("password_hash", Text),
    Column("instance_admin", Integer, nullable=False),
    Column("created_at", TS, nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("tenant", String(48), nullable=False),
    Column("identity", IDENTITY, nullable=False),
    Column("role", ROLE, nullable=False),
    Column("granted_at", TS, nullable=False),
    Column("granted_by", IDENTITY, nullable=False),
    PrimaryKeyConstraint("tenant", "identity"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", TOKEN_ID, primary_key=True),
    Column("tenant", String(48), nullable=False),
    Column("identity", IDENTITY, nullable=False),
    Column("role", ROLE, nullable=False),
    Column("name", Text, nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS),
    Column("revoked_at", TS),
    Index("ix_api_keys_tenant", "tenant"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", TOKEN_ID, primary_key=True),
    Column("identity", IDENTITY, nullable=False),
    Column("tenants", Text, nullable=False),
    Column("method", String(16), nullable=False),
    Column("refresh_hash", LargeBinary, nullable=False),
    Column("previous_hash", LargeBinary),  # the refresh secret it replaced: reuse detection
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("revoked_at", TS),
    Index("ix_sessions_identity", "identity"),
)

challenges = Table(
    "challenges",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("identity", IDENTITY, nullable=False),
    Column("tenants", Text, nullable=False),
    Column("expires_at", TS, nullable=False),
)

custodial_keys = Table(
    "custodial_keys",
    metadata,
    Column("identity", IDENTITY, primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", TS, nullable=False),
)

# --- the job engine (migration 0003) -----------------------------------------------------------

JOB_ID = String(36)

job_types = Table(
    "job_types",
    metadata,
    Column("tenant", String(48), nullable=False),
    Column("type", String(128), nullable=False),
    Column("schema", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("created_by", IDENTITY, nullable=False),
    PrimaryKeyConstraint("tenant", "type"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", JOB_ID, primary_key=True),
    Column("tenant", String(48), nullable=False),
    Column("type", String(128), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("run_at", TS, nullable=False),
    Column("payload", Text, nullable=False),
    Column("tags", Text, nullable=False),
    Column("dedupe_key", String(200)),
    Column("max_attempts", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("backoff_base_s", Float, nullable=False),
    Column("backoff_cap_s", Float, nullable=False),
    Column("timeout_s", Float, nullable=False),
    Column("node", IDENTITY),
    Column("lease_expires", TS),
    Column("cancel_requested", Integer, nullable=False),
    Column("result", Text),
    Column("error", Text),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("finished_at", TS),
    Column(
        "span_id", SPAN_ID, nullable=False
    ),  # the latest transition's span: the next one's cause
    Column("attempt_budget", Integer, nullable=False),  # attempts per run; a requeue grants more
    Index("ix_jobs_ready", "tenant", "state", "priority", "run_at"),
    Index("ix_jobs_lease", "state", "lease_expires"),
    Index("ix_jobs_list", "tenant", "state", "created_at"),
    Index(
        "uq_jobs_dedupe",
        "tenant",
        "dedupe_key",
        unique=True,
        sqlite_where=text("dedupe_key IS NOT NULL"),
        postgresql_where=text("dedupe_key IS NOT NULL"),
    ),
)

job_attempts = Table(
    "job_attempts",
    metadata,
    Column("job_id", JOB_ID, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("node", IDENTITY, nullable=False),
    Column("started_at", TS, nullable=False),
    Column("ended_at", TS),
    Column("outcome", String(16)),
    Column("error", Text),
    PrimaryKeyConstraint("job_id", "attempt"),
)

# --- schedules, nodes and the stats read model (migration 0004) --------------------------------

MINUTE = String(16)  # "YYYY-MM-DDTHH:MM", UTC: the rollups' time bucket

job_schedules = Table(
    "job_schedules",
    metadata,
    Column("id", JOB_ID, primary_key=True),
    Column("tenant", String(48), nullable=False),
    Column("name", String(64), nullable=False),
    Column("cron", String(200)),  # a cron expression, or
    Column("interval_s", Float),  # a fixed interval
    Column("timezone", String(64), nullable=False),  # where cron fields are read
    Column("job", Text, nullable=False),  # the job to submit each period (canonical JSON)
    Column("enabled", Integer, nullable=False),
    Column("next_run_at", TS, nullable=False),
    Column("last_run_at", TS),
    Column("last_job_id", JOB_ID),
    Column("created_at", TS, nullable=False),
    Column("created_by", IDENTITY, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("span_id", SPAN_ID, nullable=False),
    UniqueConstraint("tenant", "name", name="uq_job_schedules_name"),
    Index("ix_job_schedules_due", "enabled", "next_run_at"),
)

nodes = Table(
    "nodes",
    metadata,
    Column("identity", IDENTITY, primary_key=True),
    Column("tenant", String(48), nullable=False),  # its key's tenant; "system": instance-wide
    Column("session", String(36), nullable=False),  # one per registration (a restart is new)
    Column("labels", Text, nullable=False),
    Column("queues", Text, nullable=False),
    Column("types", Text),
    Column("concurrency", Integer, nullable=False),
    Column("running", Integer, nullable=False),
    Column("version", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("registered_at", TS, nullable=False),
    Column("last_seen", TS, nullable=False),
    Column("span_id", SPAN_ID, nullable=False),
    Index("ix_nodes_seen", "state", "last_seen"),
)

job_stats = Table(
    "job_stats",
    metadata,
    Column("tenant", String(48), nullable=False),
    Column("type", String(128), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("minute", MINUTE, nullable=False),
    Column("submitted", BigInteger, nullable=False),
    Column("started", BigInteger, nullable=False),
    Column("succeeded", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),  # failed attempts, retried or not
    Column("dead", BigInteger, nullable=False),
    Column("cancelled", BigInteger, nullable=False),
    Column("wait_ms", Float, nullable=False),  # sums over the minute's starts / ends
    Column("run_ms", Float, nullable=False),
    PrimaryKeyConstraint("tenant", "type", "queue", "minute"),
    Index("ix_job_stats_minute", "minute"),
)

job_stats_buckets = Table(
    "job_stats_buckets",
    metadata,
    Column("tenant", String(48), nullable=False),
    Column("type", String(128), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("minute", MINUTE, nullable=False),
    Column("metric", String(8), nullable=False),  # "wait" or "run"
    Column("bucket", Integer, nullable=False),  # `engine.stats.bucket_of(ms)`
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "type", "queue", "minute", "metric", "bucket"),
)

# --- the rules engine (migration 0005) ----------------------------------------------------------

rule_sets = Table(
    "rule_sets",
    metadata,
    Column("tenant", String(48), nullable=False),
    Column("version", Integer, nullable=False),  # 1, 2, ... per tenant
    Column("source", Text, nullable=False),  # the document as published (YAML or JSON)
    Column("document", Text, nullable=False),  # its canonical form (JCS), which `digest` hashes
    Column("digest", String(71), nullable=False),
    Column("published_at", TS, nullable=False),
    Column("published_by", IDENTITY, nullable=False),
    Column("span_id", SPAN_ID, nullable=False),  # its `rules.published` span
    PrimaryKeyConstraint("tenant", "version"),
)

rule_state = Table(
    "rule_state",
    metadata,
    Column("tenant", String(48), primary_key=True),
    Column("active_version", Integer),  # None: rules disabled
    Column("updated_at", TS, nullable=False),
    Column("updated_by", IDENTITY, nullable=False),
    Column("span_id", SPAN_ID, nullable=False),  # the span that made it so
)

held_spans = Table(
    "held_spans",
    metadata,
    Column("id", SPAN_ID, primary_key=True),
    Column("tenant", String(48), nullable=False),
    Column("span_id", SPAN_ID, nullable=False),
    Column("author", IDENTITY, nullable=False),
    Column("kind", String(128), nullable=False),
    Column("span", Text, nullable=False),  # the author's span in wire form, as submitted
    Column("key", KEY, nullable=False),  # the key its signature verified under
    Column("decision", Text, nullable=False),  # the hold decision (JSON)
    Column("votes", Text, nullable=False),  # [{by, vote, roles, at, span_id, reason?}]
    Column("state", String(16), nullable=False),  # pending, approved, rejected, expired, failed
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("decided_at", TS),
    Column("span_ref", SPAN_ID, nullable=False),  # the latest `approval.*` span about it
    Column("reason", Text),  # why it was rejected, or failed
    UniqueConstraint("tenant", "span_id", name="uq_held_spans_span"),
    Index("ix_held_spans_state", "tenant", "state", "created_at"),
    Index("ix_held_spans_expiry", "state", "expires_at"),
)

rule_outbox = Table(
    "rule_outbox",
    metadata,
    Column("id", SPAN_ID, primary_key=True),
    Column("tenant", String(48), nullable=False),
    Column("trigger", SPAN_ID, nullable=False),  # the span whose decision asked for it
    Column("rule", String(128), nullable=False),
    Column("action", Text, nullable=False),  # the follow-up (JSON)
    Column("depth", Integer, nullable=False),  # 1 + the trigger's own depth
    Column("state", String(16), nullable=False),  # pending, done, failed, stopped
    Column("attempts", Integer, nullable=False),
    Column("next_at", TS, nullable=False),
    Column("last_error", Text),
    Column("outcome", Text),  # what it made (JSON: a job id, a span id, an HTTP status)
    Column("created_at", TS, nullable=False),
    Column("done_at", TS),
    Index("ix_rule_outbox_due", "state", "next_at"),
    Index("ix_rule_outbox_trigger", "tenant", "trigger"),
)
