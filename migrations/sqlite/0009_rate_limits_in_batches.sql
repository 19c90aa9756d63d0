-- Rate limits stay in memory on SQLite (no `rate_limits` table here); this migration keeps
-- the two backends' migration numbers in step (see migrations/postgres/0009).
SELECT 1;
