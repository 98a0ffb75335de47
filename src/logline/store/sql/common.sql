-- Statements both dialects run unchanged. Named blocks: `-- name: <block>`; parameters are :named.
-- A dialect file (sqlite.sql, postgres.sql) adds the blocks whose SQL differs; no name may repeat.

-- name: set_size
UPDATE logs SET size = :size WHERE id = :log_id;

-- name: insert_log
INSERT INTO logs (tenant, size, created_at) VALUES (:tenant, 0, :created_at)
ON CONFLICT (tenant) DO NOTHING;

-- name: log_head
SELECT id, tenant, size FROM logs WHERE tenant = :tenant;

-- name: delete_empty_log
DELETE FROM logs WHERE id = :log_id AND size = 0;

-- name: logs
SELECT id, tenant, size FROM logs ORDER BY tenant;

-- name: select_identity
SELECT id, kind, public_key, status, tenant, created_at, span_id, display_name, expires_at,
    claimed_by
FROM identities WHERE id = :id;

-- name: select_identities
SELECT id, kind, public_key, status, tenant, created_at, span_id, display_name, expires_at,
    claimed_by
FROM identities ORDER BY id;

-- name: insert_identity
INSERT INTO identities (id, kind, public_key, status, tenant, created_at, span_id, display_name,
    expires_at, claimed_by)
VALUES (:id, :kind, :public_key, :status, :tenant, :created_at, :span_id, :display_name,
    :expires_at, :claimed_by);

-- name: update_identity
UPDATE identities SET public_key = COALESCE(:public_key, public_key),
    status = COALESCE(:status, status), claimed_by = COALESCE(:claimed_by, claimed_by)
WHERE id = :id;

-- name: insert_key
INSERT INTO identity_keys (identity, public_key, valid_from, valid_until, span_id)
VALUES (:identity, :public_key, :valid_from, :valid_until, :span_id);

-- name: close_key
UPDATE identity_keys SET valid_until = :valid_until
WHERE identity = :identity AND public_key = :public_key;

-- name: select_keys
SELECT identity, public_key, valid_from, valid_until, span_id FROM identity_keys
WHERE identity = :identity ORDER BY valid_from, valid_until IS NULL, valid_until;

-- name: mark_reverted
UPDATE entries SET reverted_by = :by WHERE log_id = :log_id AND span_id = :span_id;

-- name: mark_redacted
UPDATE entries SET redacted_by = :by WHERE log_id = :log_id AND span_id = :span_id;

-- name: delete_payload
DELETE FROM payloads WHERE log_id = :log_id
    AND seq = (SELECT seq FROM entries WHERE log_id = :log_id AND span_id = :span_id);

-- name: select_span_by_id
SELECT e.seq, e.span_hash, e.leaf, e.body, e.signature, e.reverted_by, e.redacted_by, p.data
FROM entries e LEFT JOIN payloads p ON p.log_id = e.log_id AND p.seq = e.seq
WHERE e.log_id = :log_id AND e.span_id = :span_id;

-- name: select_span_at
SELECT e.seq, e.span_hash, e.leaf, e.body, e.signature, e.reverted_by, e.redacted_by, p.data
FROM entries e LEFT JOIN payloads p ON p.log_id = e.log_id AND p.seq = e.seq
WHERE e.log_id = :log_id AND e.seq = :seq;

-- name: select_span_range
SELECT e.seq, e.span_hash, e.leaf, e.body, e.signature, e.reverted_by, e.redacted_by, p.data
FROM entries e LEFT JOIN payloads p ON p.log_id = e.log_id AND p.seq = e.seq
WHERE e.log_id = :log_id AND e.seq >= :start AND e.seq < :end
ORDER BY e.seq LIMIT :limit;

-- name: latest_checkpoint
SELECT size, root, note, created_at FROM checkpoints WHERE log_id = :log_id
ORDER BY size DESC LIMIT 1;

-- name: checkpoint_at
SELECT size, root, note, created_at FROM checkpoints WHERE log_id = :log_id AND size = :size;

-- name: checkpoints
SELECT size, root, note, created_at FROM checkpoints WHERE log_id = :log_id ORDER BY size;

-- name: insert_checkpoint
INSERT INTO checkpoints (log_id, size, root, note, created_at)
VALUES (:log_id, :size, :root, :note, :created_at)
ON CONFLICT (log_id, size) DO NOTHING;

-- name: schema_revision
SELECT version_num FROM alembic_version;

-- name: span_ref
SELECT e.seq, e.author, e.kind, e.status, e.payload_digest, e.reverted_by, e.redacted_by,
    (SELECT COUNT(*) FROM payloads p WHERE p.log_id = e.log_id AND p.seq = e.seq)
FROM entries e WHERE e.log_id = :log_id AND e.span_id = :span_id;

-- name: delete_identity
DELETE FROM identities WHERE id = :id;

-- name: delete_keys
DELETE FROM identity_keys WHERE identity = :id;

-- name: last_received
SELECT received FROM entries WHERE log_id = :log_id AND seq = :seq;

-- name: authors_in_range
SELECT DISTINCT author FROM entries
WHERE log_id = :log_id AND seq >= :start AND seq < :end ORDER BY author;

-- name: insert_kind
INSERT INTO log_kinds (log_id, kind) VALUES (:log_id, :kind) ON CONFLICT DO NOTHING;

-- name: kinds_like
SELECT kind FROM log_kinds WHERE log_id = :log_id AND kind LIKE :pattern ESCAPE '\'
ORDER BY kind LIMIT :limit;

-- --- accounts (migration 0002) ------------------------------------------------------------------

-- name: insert_tenant
INSERT INTO tenants (name, display_name, created_at, created_by)
VALUES (:name, :display_name, :created_at, :created_by) ON CONFLICT (name) DO NOTHING;

-- name: select_tenant
SELECT name, display_name, created_at, created_by FROM tenants WHERE name = :name;

-- name: delete_tenant
DELETE FROM tenants WHERE name = :name;

-- name: select_tenants
SELECT name, display_name, created_at, created_by FROM tenants ORDER BY name;

-- name: insert_user
INSERT INTO users (username, identity, password_hash, instance_admin, created_at)
VALUES (:username, :identity, :password_hash, :instance_admin, :created_at)
ON CONFLICT DO NOTHING;

-- name: select_user
SELECT username, identity, password_hash, instance_admin, created_at FROM users
WHERE username = :username;

-- name: select_user_by_identity
SELECT username, identity, password_hash, instance_admin, created_at FROM users
WHERE identity = :identity;

-- name: count_users
SELECT count(*) FROM users;

-- name: set_password
UPDATE users SET password_hash = :password_hash WHERE username = :username;

-- name: upsert_membership
INSERT INTO memberships (tenant, identity, role, granted_at, granted_by)
VALUES (:tenant, :identity, :role, :granted_at, :granted_by)
ON CONFLICT (tenant, identity) DO UPDATE SET role = excluded.role,
    granted_at = excluded.granted_at, granted_by = excluded.granted_by;

-- name: delete_membership
DELETE FROM memberships WHERE tenant = :tenant AND identity = :identity;

-- name: select_membership
SELECT tenant, identity, role, granted_at, granted_by FROM memberships
WHERE tenant = :tenant AND identity = :identity;

-- name: select_members
SELECT tenant, identity, role, granted_at, granted_by FROM memberships WHERE tenant = :tenant
ORDER BY identity;

-- name: select_memberships_of
SELECT tenant, identity, role, granted_at, granted_by FROM memberships WHERE identity = :identity
ORDER BY tenant;

-- name: count_owners
SELECT count(*) FROM memberships WHERE tenant = :tenant AND role = 'owner';

-- name: insert_api_key
INSERT INTO api_keys (id, tenant, identity, role, name, secret_hash, created_at, expires_at,
    revoked_at)
VALUES (:id, :tenant, :identity, :role, :name, :secret_hash, :created_at, :expires_at, NULL);

-- name: select_api_key
SELECT k.id, k.tenant, k.identity, k.role, k.name, k.secret_hash, k.created_at, k.expires_at,
    k.revoked_at, m.role
FROM api_keys k LEFT JOIN memberships m ON m.tenant = k.tenant AND m.identity = k.identity
WHERE k.id = :id;

-- name: select_api_keys
SELECT k.id, k.tenant, k.identity, k.role, k.name, k.secret_hash, k.created_at, k.expires_at,
    k.revoked_at, m.role
FROM api_keys k LEFT JOIN memberships m ON m.tenant = k.tenant AND m.identity = k.identity
WHERE k.tenant = :tenant ORDER BY k.created_at, k.id;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = :at WHERE id = :id AND tenant = :tenant AND revoked_at IS NULL;

-- name: insert_session
INSERT INTO sessions (id, identity, tenants, method, refresh_hash, created_at, expires_at,
    revoked_at)
VALUES (:id, :identity, :tenants, :method, :refresh_hash, :created_at, :expires_at, NULL);

-- name: select_session
SELECT s.id, s.identity, s.tenants, s.method, s.refresh_hash, s.previous_hash, s.created_at,
    s.expires_at, s.revoked_at, m.role
FROM sessions s LEFT JOIN memberships m ON m.identity = s.identity AND m.tenant = :tenant
WHERE s.id = :id;

-- name: rotate_refresh
UPDATE sessions SET previous_hash = refresh_hash, refresh_hash = :new_hash
WHERE id = :id AND refresh_hash = :old_hash AND revoked_at IS NULL AND expires_at > :now;

-- name: revoke_session
UPDATE sessions SET revoked_at = :at WHERE id = :id AND revoked_at IS NULL;

-- name: revoke_sessions_of
-- The sessions of `identity` bound to `tenant` (among others); `tenants` is space-separated.
UPDATE sessions SET revoked_at = :at
WHERE identity = :identity AND revoked_at IS NULL AND (' ' || tenants || ' ') LIKE :pattern;

-- name: insert_challenge
INSERT INTO challenges (nonce, identity, tenants, expires_at)
VALUES (:nonce, :identity, :tenants, :expires_at);

-- name: take_challenge
DELETE FROM challenges WHERE nonce = :nonce RETURNING identity, tenants, expires_at;

-- name: purge_challenges
DELETE FROM challenges WHERE expires_at < :now;

-- name: insert_custodial_key
INSERT INTO custodial_keys (identity, sealed, created_at) VALUES (:identity, :sealed, :created_at)
ON CONFLICT (identity) DO NOTHING;

-- name: select_custodial_key
SELECT sealed FROM custodial_keys WHERE identity = :identity;

-- --- the job engine (migration 0003) ------------------------------------------------------------
-- Writes run inside `Log.transact` on the job's tenant, under its log lock.

-- name: insert_job
INSERT INTO jobs (id, tenant, type, queue, state, priority, run_at, payload, tags, dedupe_key,
    max_attempts, attempts, backoff_base_s, backoff_cap_s, timeout_s, node, lease_expires,
    cancel_requested, result, error, created_at, updated_at, finished_at, span_id, attempt_budget)
VALUES (:id, :tenant, :type, :queue, :state, :priority, :run_at, :payload, :tags, :dedupe_key,
    :max_attempts, 0, :backoff_base_s, :backoff_cap_s, :timeout_s, NULL, NULL, 0, NULL, NULL,
    :created_at, :created_at, NULL, :span_id, :max_attempts);

-- name: job_by_dedupe_key
SELECT id, tenant, type, queue, state, priority, run_at, payload, tags, dedupe_key, max_attempts,
    attempts, backoff_base_s, backoff_cap_s, timeout_s, node, lease_expires, cancel_requested,
    result, error, created_at, updated_at, finished_at, span_id, attempt_budget
FROM jobs WHERE tenant = :tenant AND dedupe_key = :dedupe_key;

-- name: select_job
SELECT id, tenant, type, queue, state, priority, run_at, payload, tags, dedupe_key, max_attempts,
    attempts, backoff_base_s, backoff_cap_s, timeout_s, node, lease_expires, cancel_requested,
    result, error, created_at, updated_at, finished_at, span_id, attempt_budget
FROM jobs WHERE id = :id AND tenant = :tenant;

-- name: update_job
UPDATE jobs SET state = :state, run_at = :run_at, attempts = :attempts,
    max_attempts = :max_attempts, node = :node,
    lease_expires = :lease_expires, cancel_requested = :cancel_requested, result = :result,
    error = :error, updated_at = :updated_at, finished_at = :finished_at, span_id = :span_id
WHERE id = :id;

-- name: renew_lease
UPDATE jobs SET lease_expires = :lease_expires, updated_at = :now
WHERE id = :id AND tenant = :tenant AND state = 'running' AND node = :node
    AND attempts = :attempt;

-- name: insert_attempt
INSERT INTO job_attempts (job_id, attempt, node, started_at, ended_at, outcome, error)
VALUES (:job_id, :attempt, :node, :started_at, NULL, NULL, NULL);

-- name: end_attempt
UPDATE job_attempts SET ended_at = :ended_at, outcome = :outcome, error = :error
WHERE job_id = :job_id AND attempt = :attempt;

-- name: select_attempts
SELECT job_id, attempt, node, started_at, ended_at, outcome, error FROM job_attempts
WHERE job_id = :job_id ORDER BY attempt;

-- name: ready_tenants_after
-- Tenants with claimable jobs, in name order from just after the one served last (a rotation:
-- with more such tenants than one claim looks at, every one still gets its turn).
SELECT DISTINCT tenant FROM jobs
WHERE state IN ('queued', 'retrying') AND run_at <= :now AND tenant > :after
ORDER BY tenant LIMIT :limit;

-- name: ready_tenants_upto
SELECT DISTINCT tenant FROM jobs
WHERE state IN ('queued', 'retrying') AND run_at <= :now AND tenant <= :after
ORDER BY tenant LIMIT :limit;

-- name: expired_leases
SELECT tenant, id FROM jobs WHERE state = 'running' AND lease_expires < :now
ORDER BY lease_expires LIMIT :limit;

-- name: delete_job
DELETE FROM jobs WHERE id = :id AND tenant = :tenant;

-- name: delete_attempts
DELETE FROM job_attempts WHERE job_id = :job_id;

-- name: insert_job_type
INSERT INTO job_types (tenant, type, schema, created_at, created_by)
VALUES (:tenant, :type, :schema, :created_at, :created_by)
ON CONFLICT (tenant, type) DO UPDATE SET schema = excluded.schema,
    created_at = excluded.created_at, created_by = excluded.created_by;

-- name: select_job_type
SELECT tenant, type, schema, created_at, created_by FROM job_types
WHERE tenant = :tenant AND type = :type;

-- name: select_job_types
SELECT tenant, type, schema, created_at, created_by FROM job_types WHERE tenant = :tenant
ORDER BY type;

-- --- job schedules (migration 0004, engine/schedules.py) ----------------------------------------
-- Changes and firings run inside `Log.transact` on the schedule's tenant, under its log lock.

-- name: insert_schedule
INSERT INTO job_schedules (id, tenant, name, cron, interval_s, timezone, job, enabled,
    next_run_at, last_run_at, last_job_id, created_at, created_by, updated_at, span_id)
VALUES (:id, :tenant, :name, :cron, :interval_s, :timezone, :job, :enabled, :next_run_at, NULL,
    NULL, :created_at, :created_by, :created_at, :span_id);

-- name: select_schedule
SELECT id, tenant, name, cron, interval_s, timezone, job, enabled, next_run_at, last_run_at,
    last_job_id, created_at, created_by, updated_at, span_id
FROM job_schedules WHERE id = :id AND tenant = :tenant;

-- name: select_schedule_by_name
SELECT id, tenant, name, cron, interval_s, timezone, job, enabled, next_run_at, last_run_at,
    last_job_id, created_at, created_by, updated_at, span_id
FROM job_schedules WHERE tenant = :tenant AND name = :name;

-- name: select_schedules
-- A page in name order, after the last name of the previous page.
SELECT id, tenant, name, cron, interval_s, timezone, job, enabled, next_run_at, last_run_at,
    last_job_id, created_at, created_by, updated_at, span_id
FROM job_schedules WHERE tenant = :tenant AND name > :after ORDER BY name LIMIT :limit;

-- name: update_schedule
UPDATE job_schedules SET cron = :cron, interval_s = :interval_s, timezone = :timezone, job = :job,
    enabled = :enabled, next_run_at = :next_run_at, updated_at = :updated_at, span_id = :span_id
WHERE id = :id AND tenant = :tenant;

-- name: advance_schedule
-- A period was run: the schedule's definition (and its latest span) stay as they are.
UPDATE job_schedules SET next_run_at = :next_run_at, last_run_at = :last_run_at,
    last_job_id = :last_job_id
WHERE id = :id AND tenant = :tenant;

-- name: delete_schedule
DELETE FROM job_schedules WHERE id = :id AND tenant = :tenant;

-- name: due_schedules
SELECT tenant, id FROM job_schedules WHERE enabled = 1 AND next_run_at <= :now
ORDER BY next_run_at LIMIT :limit;

-- --- worker nodes (migration 0004, engine/nodes.py) ----------------------------------------------
-- State changes run inside `Log.transact` on the node's tenant; plain heartbeats only touch the row.

-- name: upsert_worker_node
INSERT INTO nodes (identity, tenant, session, labels, queues, types, concurrency, running,
    version, host, pid, state, registered_at, last_seen, span_id)
VALUES (:identity, :tenant, :session, :labels, :queues, :types, :concurrency, 0, :version, :host,
    :pid, 'online', :now, :now, :span_id)
ON CONFLICT (identity) DO UPDATE SET tenant = excluded.tenant, session = excluded.session,
    labels = excluded.labels, queues = excluded.queues, types = excluded.types,
    concurrency = excluded.concurrency, running = 0, version = excluded.version,
    host = excluded.host, pid = excluded.pid, state = 'online',
    registered_at = excluded.registered_at, last_seen = excluded.last_seen,
    span_id = excluded.span_id;

-- name: select_worker_node
SELECT identity, tenant, session, labels, queues, types, concurrency, running, version, host,
    pid, state, registered_at, last_seen, span_id
FROM nodes WHERE identity = :identity;

-- name: touch_worker_node
-- A heartbeat that changes no state: no span, just the time and the running count.
UPDATE nodes SET last_seen = :now, running = :running
WHERE identity = :identity AND session = :session AND state = :state;

-- name: update_worker_node
UPDATE nodes SET state = :state, running = :running, last_seen = :last_seen, span_id = :span_id
WHERE identity = :identity;

-- name: stale_worker_nodes
SELECT identity, tenant FROM nodes
WHERE state IN ('online', 'draining') AND last_seen < :before
ORDER BY last_seen LIMIT :limit;

-- name: worker_nodes
SELECT identity, tenant, session, labels, queues, types, concurrency, running, version, host,
    pid, state, registered_at, last_seen, span_id
FROM nodes ORDER BY identity;

-- name: worker_node_states
-- For metrics: nodes per state, and when the longest-silent one of each was last heard from.
SELECT state, COUNT(*), MIN(last_seen) FROM nodes GROUP BY state;

-- --- the jobs read model (migration 0004, engine/stats.py) --------------------------------------
-- Written with the transitions they count; concurrent transactions add up, never overwrite.

-- name: stats_add
INSERT INTO job_stats (tenant, type, queue, minute, submitted, started, succeeded, failed, dead,
    cancelled, wait_ms, run_ms)
VALUES (:tenant, :type, :queue, :minute, :submitted, :started, :succeeded, :failed, :dead,
    :cancelled, :wait_ms, :run_ms)
ON CONFLICT (tenant, type, queue, minute) DO UPDATE SET
    submitted = job_stats.submitted + excluded.submitted,
    started = job_stats.started + excluded.started,
    succeeded = job_stats.succeeded + excluded.succeeded,
    failed = job_stats.failed + excluded.failed,
    dead = job_stats.dead + excluded.dead,
    cancelled = job_stats.cancelled + excluded.cancelled,
    wait_ms = job_stats.wait_ms + excluded.wait_ms,
    run_ms = job_stats.run_ms + excluded.run_ms;

-- name: stats_bucket_add
INSERT INTO job_stats_buckets (tenant, type, queue, minute, metric, bucket, count)
VALUES (:tenant, :type, :queue, :minute, :metric, :bucket, :count)
ON CONFLICT (tenant, type, queue, minute, metric, bucket) DO UPDATE SET
    count = job_stats_buckets.count + excluded.count;

-- name: attempt_started_at
SELECT started_at FROM job_attempts WHERE job_id = :job_id AND attempt = :attempt;

-- --- the rules engine (migration 0005) ----------------------------------------------------------

-- name: insert_rule_set
INSERT INTO rule_sets (tenant, version, source, document, digest, published_at, published_by,
    span_id)
VALUES (:tenant, :version, :source, :document, :digest, :published_at, :published_by, :span_id);

-- name: select_rule_set
SELECT tenant, version, source, document, digest, published_at, published_by, span_id
FROM rule_sets WHERE tenant = :tenant AND version = :version;

-- name: select_rule_sets
SELECT tenant, version, source, document, digest, published_at, published_by, span_id
FROM rule_sets WHERE tenant = :tenant ORDER BY version DESC;

-- name: max_rule_version
SELECT MAX(version) FROM rule_sets WHERE tenant = :tenant;

-- name: select_rule_state
SELECT tenant, active_version, updated_at, updated_by, span_id FROM rule_state
WHERE tenant = :tenant;

-- name: upsert_rule_state
INSERT INTO rule_state (tenant, active_version, updated_at, updated_by, span_id)
VALUES (:tenant, :active_version, :updated_at, :updated_by, :span_id)
ON CONFLICT (tenant) DO UPDATE SET active_version = excluded.active_version,
    updated_at = excluded.updated_at, updated_by = excluded.updated_by,
    span_id = excluded.span_id;

-- name: insert_held_span
INSERT INTO held_spans (id, tenant, span_id, author, kind, span, key, decision, votes, state,
    created_at, expires_at, decided_at, span_ref)
VALUES (:id, :tenant, :span_id, :author, :kind, :span, :key, :decision, '[]', 'pending',
    :created_at, :expires_at, NULL, :span_ref);

-- name: held_span_of
SELECT id, state FROM held_spans WHERE tenant = :tenant AND span_id = :span_id;

-- name: insert_outbox
INSERT INTO rule_outbox (id, tenant, trigger, rule, action, depth, state, attempts, next_at,
    last_error, outcome, created_at, done_at)
VALUES (:id, :tenant, :trigger, :rule, :action, :depth, :state, 0, :next_at, :last_error, NULL,
    :created_at, NULL);

-- name: entry_received_at
SELECT received FROM entries WHERE log_id = :log_id AND seq = :seq;

-- name: log_kinds_of
SELECT kind FROM log_kinds WHERE log_id = :log_id;

-- --- the follow-up outbox and approvals (rules/outbox.py, rules/holds.py) ------------------------

-- name: select_outbox
SELECT id, tenant, trigger, rule, action, depth, state, attempts, next_at, last_error, outcome,
    created_at, done_at
FROM rule_outbox WHERE id = :id;

-- name: any_due_outbox
SELECT 1 FROM rule_outbox WHERE state = 'pending' AND next_at <= :now LIMIT 1;

-- name: lease_outbox
-- A dispatcher takes a due row: nobody else takes it until `next_at`, when it is due again.
UPDATE rule_outbox SET attempts = attempts + 1, next_at = :next_at
WHERE id = :id AND state = 'pending';

-- name: finish_outbox
UPDATE rule_outbox SET state = :state, outcome = :outcome, last_error = :last_error,
    done_at = :done_at
WHERE id = :id AND state = 'pending';

-- name: retry_outbox
UPDATE rule_outbox SET next_at = :next_at, last_error = :last_error
WHERE id = :id AND state = 'pending';

-- name: select_held
SELECT id, tenant, span_id, author, kind, span, key, decision, votes, state, created_at,
    expires_at, decided_at, span_ref, reason
FROM held_spans WHERE id = :id AND tenant = :tenant;

-- name: select_holds
-- Newest first; `state` '' for any; `before` the last id of the previous page ('' for none).
SELECT id, tenant, span_id, author, kind, span, key, decision, votes, state, created_at,
    expires_at, decided_at, span_ref, reason
FROM held_spans
WHERE tenant = :tenant AND (:state = '' OR state = :state) AND (:before = '' OR id < :before)
ORDER BY id DESC LIMIT :limit;

-- name: update_held
UPDATE held_spans SET votes = :votes, state = :state, decided_at = :decided_at,
    span_ref = :span_ref, reason = :reason
WHERE id = :id AND tenant = :tenant;

-- name: due_holds
SELECT tenant, id FROM held_spans WHERE state = 'pending' AND expires_at <= :now
ORDER BY expires_at LIMIT :limit;
