-- The PostgreSQL dialect of the blocks whose SQL differs between backends (see common.sql).
-- :named parameters become %(named)s when loaded. Bulk rows (the insert_* blocks) go through
-- COPY: one stream per table instead of one statement per row.

-- name: lock_log
SELECT id, tenant, size FROM logs WHERE tenant = :tenant FOR UPDATE;

-- name: select_nodes
SELECT node, hash FROM merkle_nodes WHERE log_id = :log_id AND node = ANY(:nodes);

-- name: existing_span_ids
SELECT span_id FROM entries WHERE log_id = :log_id AND span_id = ANY(:span_ids);

-- name: insert_entry
COPY entries (log_id, seq, span_id, span_hash, leaf, body, signature, ts, received, author, kind,
    title, status, payload_digest, caused_by, replay_of, contract_id, workflow_id, flow_id,
    visibility, tags) FROM STDIN;

-- name: insert_tag
COPY span_tags (log_id, tag, seq) FROM STDIN;

-- name: insert_payload
COPY payloads (log_id, seq, data) FROM STDIN;

-- name: insert_node
COPY merkle_nodes (log_id, node, hash) FROM STDIN;

-- name: lock_identity
SELECT id, kind, public_key, status, tenant, created_at, span_id, display_name, expires_at,
    claimed_by
FROM identities WHERE id = :id FOR SHARE;

-- name: title_match
-- A WHERE fragment of `query`, served by the expression index `entries_fts` (migration 0002).
e.log_id = :log_id AND to_tsvector('simple', e.title) @@ plainto_tsquery('simple', :text)

-- name: announce
-- Delivered to listeners (`PostgresStore.listen`) when the transaction commits, never before.
SELECT pg_notify('logline_logs', :payload);

-- name: announce_jobs
-- Wakes other processes' waiting claims (`PostgresStore.listen`) when the transaction commits.
SELECT pg_notify('logline_jobs', :tenant);

-- name: claim_candidates
-- Rows another claimer has locked are skipped, not waited for.
SELECT id, tenant, type, queue, state, priority, run_at, payload, tags, dedupe_key, max_attempts,
    attempts, backoff_base_s, backoff_cap_s, timeout_s, node, lease_expires, cancel_requested,
    result, error, created_at, updated_at, finished_at, span_id, attempt_budget
FROM jobs
WHERE tenant = :tenant AND state IN ('queued', 'retrying') AND run_at <= :now
    AND queue = ANY(:queues)
AND (:any_type = 1 OR type = ANY(:types))
ORDER BY priority, run_at, id LIMIT :limit
FOR UPDATE SKIP LOCKED;

-- name: lock_job
SELECT id, tenant, type, queue, state, priority, run_at, payload, tags, dedupe_key, max_attempts,
    attempts, backoff_base_s, backoff_cap_s, timeout_s, node, lease_expires, cancel_requested,
    result, error, created_at, updated_at, finished_at, span_id, attempt_budget
FROM jobs WHERE id = :id AND tenant = :tenant FOR UPDATE;

-- name: ready_tenants_among
SELECT DISTINCT tenant FROM jobs
WHERE state IN ('queued', 'retrying') AND run_at <= :now AND tenant = ANY(:tenants)
ORDER BY tenant;

-- name: lock_schedule
-- Another scheduler firing the same schedule waits here, then finds it no longer due.
SELECT id, tenant, name, cron, interval_s, timezone, job, enabled, next_run_at, last_run_at,
    last_job_id, created_at, created_by, updated_at, span_id
FROM job_schedules WHERE id = :id AND tenant = :tenant FOR UPDATE;

-- name: lock_worker_node
SELECT identity, tenant, session, labels, queues, types, concurrency, running, version, host,
    pid, state, registered_at, last_seen, span_id
FROM nodes WHERE identity = :identity FOR UPDATE;

-- name: worker_nodes_among
SELECT identity, tenant, session, labels, queues, types, concurrency, running, version, host,
    pid, state, registered_at, last_seen, span_id
FROM nodes WHERE tenant = ANY(:tenants) ORDER BY identity;

-- name: count_recent
-- Window counts for rules: spans from `floor` on, of the given kinds, by `author` unless any.
SELECT COUNT(*) FROM entries
WHERE log_id = :log_id AND seq >= :floor AND kind = ANY(:kinds)
    AND (:any_author = 1 OR author = :author);

-- name: due_outbox
-- Follow-ups to run; rows another dispatcher is taking are skipped, not waited for.
SELECT id, tenant, trigger, rule, action, depth, state, attempts, next_at, last_error, outcome,
    created_at, done_at
FROM rule_outbox WHERE state = 'pending' AND next_at <= :now
ORDER BY next_at, id LIMIT :limit
FOR UPDATE SKIP LOCKED;
