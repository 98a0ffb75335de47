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
