-- Staff roles, the audit trail of staff reads, and the subject → streams index (issue 4).

-- Every stream of a data subject (ids only; kept after erasure so purges can find them).
CREATE TABLE subject_streams
(
    subject        text    NOT NULL,
    aggregate_type text    NOT NULL,
    aggregate_id   text    NOT NULL,
    first_position integer NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) STRICT;
CREATE INDEX subject_streams_by_subject ON subject_streams (subject);

CREATE TABLE rm_staff_roles
(
    account_id text    NOT NULL,
    role       text    NOT NULL,
    granted_at integer NOT NULL,
    PRIMARY KEY (account_id, role)
) STRICT;

-- One row per staff read of personal data.
CREATE TABLE rm_audit
(
    position integer PRIMARY KEY,
    actor    text    NOT NULL,
    subject  text,
    action   text    NOT NULL,
    reason   text    NOT NULL,
    at       integer NOT NULL
) STRICT;
CREATE INDEX rm_audit_by_actor ON rm_audit (actor, at);
CREATE INDEX rm_audit_by_subject ON rm_audit (subject, at);

-- Consent state per account, for the processing gates (marketing, analytics).
CREATE TABLE rm_consents
(
    account_id         text    PRIMARY KEY,
    analytics_cookies  integer NOT NULL DEFAULT 0,
    marketing_email    integer NOT NULL DEFAULT 0,
    marketing_objected integer NOT NULL DEFAULT 0,
    restricted         integer NOT NULL DEFAULT 0,
    updated_at         integer NOT NULL
) STRICT;

-- Self-service export jobs. The document is sealed under the subject's account key, so an
-- erasure makes it unreadable; rows expire with their download link.
CREATE TABLE export_jobs
(
    job_id       text    PRIMARY KEY,
    account_id   text    NOT NULL,
    format       text    NOT NULL,
    status       text    NOT NULL,
    document     text,
    error        text,
    created_at   integer NOT NULL,
    ready_at     integer,
    expires_at   integer
) STRICT;
CREATE INDEX export_jobs_by_account ON export_jobs (account_id);

-- Retention compaction: when the events sealed under a destroyed key were rewritten into tombstones.
ALTER TABLE data_keys ADD COLUMN compacted_at integer;

-- Data-subject requests, for staff's due-date worklist.
CREATE TABLE rm_requests
(
    request_id  text    PRIMARY KEY,
    subject     text    NOT NULL,
    kind        text    NOT NULL,
    channel     text    NOT NULL,
    status      text    NOT NULL,
    received_at integer NOT NULL,
    due_at      integer NOT NULL,
    closed_at   integer,
    reminded    integer NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX rm_requests_by_due ON rm_requests (status, due_at);
CREATE INDEX rm_requests_by_subject ON rm_requests (subject);

-- Accounts waiting for their deletion window to end (write side, like identity_index): a row
-- stays until the purge has certified the erasure, so an interrupted purge is retried.
CREATE TABLE deletion_queue
(
    account_id   text    PRIMARY KEY,
    purge_after  integer NOT NULL,
    requested_at integer NOT NULL
) STRICT;
