-- The SQLite dialect of the blocks whose SQL differs between backends (see common.sql).
-- tests/unit/test_sql_files.py checks that both dialects define the same names.

-- name: lock_log
SELECT id, tenant, size FROM logs WHERE tenant = :tenant;

-- name: select_nodes
SELECT node, hash FROM merkle_nodes
WHERE log_id = :log_id AND node IN (SELECT value FROM json_each(:nodes));

-- name: existing_span_ids
SELECT span_id FROM entries
WHERE log_id = :log_id AND span_id IN (SELECT value FROM json_each(:span_ids));

-- name: insert_entry
INSERT INTO entries (log_id, seq, span_id, span_hash, leaf, body, signature, ts, received, author,
    kind, title, status, payload_digest, caused_by, replay_of, contract_id, workflow_id, flow_id,
    visibility, tags)
VALUES (:log_id, :seq, :span_id, :span_hash, :leaf, :body, :signature, :ts, :received, :author,
    :kind, :title, :status, :payload_digest, :caused_by, :replay_of, :contract_id, :workflow_id,
    :flow_id, :visibility, :tags);

-- name: insert_tag
INSERT INTO span_tags (log_id, tag, seq) VALUES (:log_id, :tag, :seq);

-- name: insert_payload
INSERT INTO payloads (log_id, seq, data) VALUES (:log_id, :seq, :data);

-- name: insert_node
INSERT INTO merkle_nodes (log_id, node, hash) VALUES (:log_id, :node, :hash);

-- name: lock_identity
SELECT id, kind, public_key, status, tenant, created_at, span_id, display_name, expires_at,
    claimed_by
FROM identities WHERE id = :id;

-- name: title_match
-- A WHERE fragment of `query`: the FTS5 rowid is log_id << 40 | seq (migration 0002).
e.seq IN (SELECT rowid - (:log_id << 40) FROM entries_fts
    WHERE entries_fts MATCH :text AND rowid >= (:log_id << 40) AND rowid < ((:log_id + 1) << 40))

-- name: announce
-- Nothing to push: other processes on the same file notice new entries by polling log heads.
SELECT :payload WHERE 0;

-- name: announce_jobs
-- Nothing to push: claims waiting in other processes look again every quarter second.
SELECT :tenant WHERE 0;

-- name: claim_candidates
-- SQLite writers are serialized (BEGIN IMMEDIATE): nothing else can claim these meanwhile.
SELECT id, tenant, type, queue, state, priority, run_at, payload, tags, dedupe_key, max_attempts,
    attempts, backoff_base_s, backoff_cap_s, timeout_s, node, lease_expires, cancel_requested,
    result, error, created_at, updated_at, finished_at, span_id, attempt_budget
FROM jobs
WHERE tenant = :tenant AND state IN ('queued', 'retrying') AND run_at <= :now
    AND queue IN (SELECT value FROM json_each(:queues))
AND (:any_type = 1 OR type IN (SELECT value FROM json_each(:types)))
ORDER BY priority, run_at, id LIMIT :limit;

-- name: lock_job
SELECT id, tenant, type, queue, state, priority, run_at, payload, tags, dedupe_key, max_attempts,
    attempts, backoff_base_s, backoff_cap_s, timeout_s, node, lease_expires, cancel_requested,
    result, error, created_at, updated_at, finished_at, span_id, attempt_budget
FROM jobs WHERE id = :id AND tenant = :tenant;

-- name: ready_tenants_among
SELECT DISTINCT tenant FROM jobs
WHERE state IN ('queued', 'retrying') AND run_at <= :now AND tenant IN (SELECT value FROM json_each(:tenants))
ORDER BY tenant;

-- name: lock_schedule
-- SQLite writers are serialized (BEGIN IMMEDIATE): the row needs no lock of its own.
SELECT id, tenant, name, cron, interval_s, timezone, job, enabled, next_run_at, last_run_at,
    last_job_id, created_at, created_by, updated_at, span_id
FROM job_schedules WHERE id = :id AND tenant = :tenant;

-- name: lock_worker_node
SELECT identity, tenant, session, labels, queues, types, concurrency, running, version, host,
    pid, state, registered_at, last_seen, span_id
FROM nodes WHERE identity = :identity;

-- name: worker_nodes_among
SELECT identity, tenant, session, labels, queues, types, concurrency, running, version, host,
    pid, state, registered_at, last_seen, span_id
FROM nodes WHERE tenant IN (SELECT value FROM json_each(:tenants)) ORDER BY identity;

-- name: count_recent
-- Window counts for rules: spans from `floor` on, of the given kinds, by `author` unless any.
SELECT COUNT(*) FROM entries
WHERE log_id = :log_id AND seq >= :floor AND kind IN (SELECT value FROM json_each(:kinds))
    AND (:any_author = 1 OR author = :author);

-- name: due_outbox
-- Follow-ups to run (BEGIN IMMEDIATE already keeps other dispatchers out).
SELECT id, tenant, trigger, rule, action, depth, state, attempts, next_at, last_error, outcome,
    created_at, done_at
FROM rule_outbox WHERE state = 'pending' AND next_at <= :now
ORDER BY next_at, id LIMIT :limit;
