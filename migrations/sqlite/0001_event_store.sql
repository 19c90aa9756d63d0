-- Event store used unchanged by sqlite-es (its INSERT names only the first seven columns).
-- `position` is a global, gap-free commit-order counter assigned by trigger: SQLite has a
-- single writer, so assignment order is commit order. `txid` is always 0 on SQLite; the
-- projection runner orders by (txid, position) on both backends.
-- `committed_at` is the wall-clock time the row was written (ms since epoch), inside the
-- writing transaction; commit follows within that transaction's lifetime.
CREATE TABLE events
(
    aggregate_type text                          NOT NULL,
    aggregate_id   text                          NOT NULL,
    sequence       integer CHECK (sequence >= 0) NOT NULL,
    event_type     text                          NOT NULL,
    event_version  text                          NOT NULL,
    payload        text                          NOT NULL,
    metadata       text                          NOT NULL,
    position       integer,
    committed_at   integer                       NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    txid           integer                       NOT NULL DEFAULT 0,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE TABLE event_position_counter
(
    id    integer PRIMARY KEY CHECK (id = 1),
    value integer NOT NULL
) STRICT;
INSERT INTO event_position_counter (id, value) VALUES (1, 0);

CREATE TRIGGER events_assign_position AFTER INSERT ON events
BEGIN
    UPDATE event_position_counter SET value = value + 1 WHERE id = 1;
    UPDATE events SET position = (SELECT value FROM event_position_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;

CREATE UNIQUE INDEX events_by_position ON events (position);

-- Required by sqlite-es; unused while we run in plain event-store mode (see ARCHITECTURE.md).
CREATE TABLE snapshots
(
    aggregate_type   text                                  NOT NULL,
    aggregate_id     text                                  NOT NULL,
    last_sequence    integer CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
    payload          text                                  NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;

-- Data keys for sealed personal data: one per subject x category x period, wrapped by the
-- master key. Destroying a key sets `wrapped` to NULL and keeps the row as proof.
CREATE TABLE data_keys
(
    key_id           text    PRIMARY KEY,
    subject          text    NOT NULL,
    category         text    NOT NULL,
    period           text    NOT NULL,
    wrapped          blob,
    created_at       integer NOT NULL,
    destroyed_at     integer,
    destroyed_reason text,
    UNIQUE (subject, category, period)
) STRICT;
CREATE INDEX data_keys_by_category_period ON data_keys (category, period);

-- Write-side uniqueness guard: one account per email / Google subject. Holds only HMACs.
CREATE TABLE identity_index
(
    kind       text    NOT NULL,
    hash       text    NOT NULL,
    account_id text    NOT NULL,
    created_at integer NOT NULL,
    PRIMARY KEY (kind, hash)
) STRICT;
CREATE INDEX identity_index_by_account ON identity_index (account_id);

-- One row per projection: the last event applied, written in the same transaction as the
-- projection's read-model rows.
CREATE TABLE projection_checkpoints
(
    name       text    PRIMARY KEY,
    txid       integer NOT NULL,
    position   integer NOT NULL,
    updated_at integer NOT NULL
) STRICT;

CREATE TABLE rm_accounts
(
    account_id text    PRIMARY KEY,
    created_at integer NOT NULL,
    status     text    NOT NULL,
    has_google integer NOT NULL,
    updated_at integer NOT NULL
) STRICT;

CREATE TABLE rm_sessions
(
    session_id text    PRIMARY KEY,
    account_id text    NOT NULL,
    method     text    NOT NULL,
    started_at integer NOT NULL,
    expires_at integer NOT NULL,
    ended_at   integer
) STRICT;
CREATE INDEX rm_sessions_by_account ON rm_sessions (account_id);

CREATE TABLE rm_api_keys
(
    key_id       text    PRIMARY KEY,
    account_id   text    NOT NULL,
    name         text    NOT NULL,
    key_hash     text    NOT NULL UNIQUE,
    prefix       text    NOT NULL,
    last4        text    NOT NULL,
    created_at   integer NOT NULL,
    last_used_at integer,
    revoked_at   integer
) STRICT;
CREATE INDEX rm_api_keys_by_account ON rm_api_keys (account_id);
