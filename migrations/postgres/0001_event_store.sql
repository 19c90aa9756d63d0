-- Event store used unchanged by postgres-es (its INSERT names only the first seven columns).
-- `position` comes from a sequence, so a lower position can become visible after a higher
-- one; `txid` records the writing transaction so the projection runner can read only below
-- the oldest in-flight transaction (pg_snapshot_xmin) and never skip a late commit.
-- `committed_at` is the wall-clock time the row was written (ms since epoch), inside the
-- writing transaction; commit follows within that transaction's lifetime.
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    position       bigserial                    NOT NULL UNIQUE,
    committed_at   bigint                       NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
    txid           xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE INDEX events_by_txid_position ON events (txid, position);

-- Required by postgres-es; unused while we run in plain event-store mode (see ARCHITECTURE.md).
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

CREATE TABLE data_keys
(
    key_id           text   PRIMARY KEY,
    subject          text   NOT NULL,
    category         text   NOT NULL,
    period           text   NOT NULL,
    wrapped          bytea,
    created_at       bigint NOT NULL,
    destroyed_at     bigint,
    destroyed_reason text,
    UNIQUE (subject, category, period)
);
CREATE INDEX data_keys_by_category_period ON data_keys (category, period);

CREATE TABLE identity_index
(
    kind       text   NOT NULL,
    hash       text   NOT NULL,
    account_id text   NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (kind, hash)
);
CREATE INDEX identity_index_by_account ON identity_index (account_id);

CREATE TABLE projection_checkpoints
(
    name       text   PRIMARY KEY,
    txid       bigint NOT NULL,
    position   bigint NOT NULL,
    updated_at bigint NOT NULL
);

CREATE TABLE rm_accounts
(
    account_id text   PRIMARY KEY,
    created_at bigint NOT NULL,
    status     text   NOT NULL,
    has_google bigint NOT NULL,
    updated_at bigint NOT NULL
);

CREATE TABLE rm_sessions
(
    session_id text   PRIMARY KEY,
    account_id text   NOT NULL,
    method     text   NOT NULL,
    started_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    ended_at   bigint
);
CREATE INDEX rm_sessions_by_account ON rm_sessions (account_id);

CREATE TABLE rm_api_keys
(
    key_id       text   PRIMARY KEY,
    account_id   text   NOT NULL,
    name         text   NOT NULL,
    key_hash     text   NOT NULL UNIQUE,
    prefix       text   NOT NULL,
    last4        text   NOT NULL,
    created_at   bigint NOT NULL,
    last_used_at bigint,
    revoked_at   bigint
);
CREATE INDEX rm_api_keys_by_account ON rm_api_keys (account_id);
