-- Rate limits shared by every instance (commands::limits::postgres): one GCRA state per
-- limited key. UNLOGGED: the state is disposable (a database crash empties the table,
-- which only refills every budget), so it costs no WAL. `now_us` and `allowed` carry the
-- last check's answer back through RETURNING.
CREATE UNLOGGED TABLE rate_limits (
    bucket TEXT PRIMARY KEY,
    tat_us BIGINT NOT NULL,
    now_us BIGINT NOT NULL,
    allowed BOOLEAN NOT NULL
);

-- Named job leases (commands::leases): the one instance that runs a periodic or one-shot
-- job, until when (ms since the epoch, database clock), and when the job last completed.
CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_done_at BIGINT
);
