-- Billing and credits (issue 3). Migrations are append-only from 0001 on.

-- Write-side routing of Stripe ids (customer, subscription, payment intent, invoice) to
-- accounts. Pseudonymous ids only.
CREATE TABLE billing_refs
(
    stripe_id  text    PRIMARY KEY,
    account_id text    NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX billing_refs_by_account ON billing_refs (account_id);

-- Billing state per account (no card details, no amounts: those stay sealed in events).
CREATE TABLE rm_billing
(
    account_id           text    PRIMARY KEY,
    customer_id          text,
    plan                 text,
    status               text,
    period_end           bigint,
    cancel_at_period_end bigint NOT NULL DEFAULT 0,
    ended                bigint NOT NULL DEFAULT 0,
    suspended            bigint NOT NULL DEFAULT 0,
    updated_at           bigint NOT NULL
);

-- The credit ledger's history, one row per balance-changing event.
CREATE TABLE rm_credit_entries
(
    account_id    text    NOT NULL,
    seq           bigint NOT NULL,
    kind          text    NOT NULL,
    amount        bigint NOT NULL,
    balance_after bigint NOT NULL,
    task_id       text,
    grant_id      text,
    source        text,
    expires_at    bigint,
    at            bigint NOT NULL,
    PRIMARY KEY (account_id, seq)
);
