-- The PostgreSQL dialect of the blocks whose SQL differs between backends (see common.sql).
-- :named parameters become %(named)s when loaded.

-- name: lock_log
SELECT id, tenant, size FROM logs WHERE tenant = :tenant FOR UPDATE;

-- name: select_nodes
SELECT node, hash FROM merkle_nodes WHERE log_id = :log_id AND node = ANY(:nodes);

-- name: existing_span_ids
SELECT span_id FROM entries WHERE log_id = :log_id AND span_id = ANY(:span_ids);
