-- Named job leases (commands::leases): the one instance that runs a periodic or one-shot
-- job, until when (ms since the epoch), and when the job last completed. SQLite serves
-- one instance; the table keeps "once per period" across its restarts.
-- (Rate limits stay in memory on SQLite: there is no `rate_limits` table here.)
CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    last_done_at INTEGER
);
