-- The Postgres rate limiter answers every check queued in an instance with one statement
-- (commands::limits::postgres): several checks of one key in a batch are one row's
-- update, so the row carries how many were asked (`requested`) under which quota
-- (`interval_us`, `tolerance_us`) into ON CONFLICT DO UPDATE, and how many were let
-- through (`granted`) back through RETURNING. `allowed` (granted > 0) stays written for
-- an instance of the previous version during a rolling deploy.
ALTER TABLE rate_limits
    ADD COLUMN requested INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN granted INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN interval_us BIGINT NOT NULL DEFAULT 1,
    ADD COLUMN tolerance_us BIGINT NOT NULL DEFAULT 1;
