-- Image-generation tasks, their background work queue, idempotency keys and the usage
-- log read models (issue 6).

-- Write side: one row per task with work still owed (submission, polling, timeout,
-- settling credits, customer webhook). Workers claim rows with a lease, so with several
-- instances on one database no row is processed by two at once. The row goes when the
-- task is terminal, settled and its webhook delivered or abandoned.
CREATE TABLE task_work
(
    task_id     text    PRIMARY KEY,
    account_id  text    NOT NULL,
    provider    text    NOT NULL,
    due_at      integer NOT NULL,
    lease_owner text,
    lease_until integer NOT NULL DEFAULT 0,
    created_at  integer NOT NULL
) STRICT;
CREATE INDEX task_work_due ON task_work (due_at);

-- Write side: a client's Idempotency-Key → the task it created (24 hours). Only a hash
-- of the key is stored; `fingerprint` is a hash of the request, so reusing a key for a
-- different request is refused.
CREATE TABLE idempotency_keys
(
    account_id  text    NOT NULL,
    key_hash    text    NOT NULL,
    fingerprint text    NOT NULL,
    task_id     text    NOT NULL,
    created_at  integer NOT NULL,
    PRIMARY KEY (account_id, key_hash)
) STRICT;

-- Read model: the account holder's task list (no personal data: ids, types, states).
CREATE TABLE rm_tasks
(
    task_id     text    PRIMARY KEY,
    account_id  text    NOT NULL,
    task_type   text    NOT NULL,
    model       text    NOT NULL,
    status      text    NOT NULL,
    percentage  integer NOT NULL,
    credits     integer NOT NULL,
    images      integer NOT NULL DEFAULT 0,
    created_at  integer NOT NULL,
    updated_at  integer NOT NULL
) STRICT;
CREATE INDEX rm_tasks_by_account ON rm_tasks (account_id, created_at);

-- Read model: images delivered per account (outlives the 90-day task list).
CREATE TABLE rm_image_totals
(
    account_id   text    PRIMARY KEY,
    total_images integer NOT NULL
) STRICT;

-- Read model: one row per recorded API request (the sealed client IP stays in the event).
CREATE TABLE rm_usage
(
    position   integer PRIMARY KEY,
    account_id text    NOT NULL,
    day        text    NOT NULL,
    at         integer NOT NULL,
    endpoint   text    NOT NULL,
    status     integer NOT NULL,
    credits    integer NOT NULL,
    task_id    text
) STRICT;
CREATE INDEX rm_usage_by_account ON rm_usage (account_id, at);
