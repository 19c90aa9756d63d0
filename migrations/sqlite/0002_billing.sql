-- Billing and credits (issue 3). Migrations are append-only from 0001 on.

-- Write-side routing of Stripe ids (customer, subscription, payment intent, invoice) to
-- accounts. Pseudonymous ids only.
CREATE TABLE billing_refs
(
    stripe_id  text    PRIMARY KEY,
    account_id text    NOT NULL,
    created_at integer NOT NULL
) STRICT;
CREATE INDEX billing_refs_by_account ON billing_refs (account_id);

-- Billing state per account (no card details, no amounts: those stay sealed in events).
CREATE TABLE rm_billing
(
    account_id           text    PRIMARY KEY,
    customer_id          text,
    plan                 text,
    status               text,
    period_end           integer,
    cancel_at_period_end integer NOT NULL DEFAULT 0,
    ended                integer NOT NULL DEFAULT 0,
    suspended            integer NOT NULL DEFAULT 0,
    updated_at           integer NOT NULL
) STRICT;

-- The credit ledger's history, one row per balance-changing event.
CREATE TABLE rm_credit_entries
(
    account_id    text    NOT NULL,
    seq           integer NOT NULL,
    kind          text    NOT NULL,
    amount        integer NOT NULL,
    balance_after integer NOT NULL,
    task_id       text,
    grant_id      text,
    source        text,
    expires_at    integer,
    at            integer NOT NULL,
    PRIMARY KEY (account_id, seq)
) STRICT;
