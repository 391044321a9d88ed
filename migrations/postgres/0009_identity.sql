-- The identity service's durable records (ADR 0019): accounts, every change to them with
-- who made it, sessions and their refresh tokens. Redis holds the live sessions the APIs
-- check; these rows are the record they are rebuilt from and audited against.
-- Personal data (email, name, the TOTP secret) is sealed under the account's data key
-- (pii.data_keys, ADR 0017), so an erasure shreds it; the email's lookup key is an HMAC
-- under a key of its own (also in pii.data_keys), never the address itself.
CREATE SCHEMA IF NOT EXISTS identity;

CREATE TABLE IF NOT EXISTS identity.accounts (
    account_id text PRIMARY KEY,                 -- the tokens' subject, the bookings' customer
    email_lookup text NOT NULL UNIQUE,           -- HMAC of the normalised email
    email text NOT NULL,                         -- sealed
    name text NOT NULL,                          -- sealed
    password_hash text NOT NULL,                 -- Argon2id, PHC string
    roles text[] NOT NULL,
    totp_secret text,                            -- sealed; set at enrolment
    totp_enabled boolean NOT NULL DEFAULT false, -- true once a code confirmed it
    totp_last_step bigint NOT NULL DEFAULT 0,    -- the last TOTP time step used (no replay)
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz
);

-- append-only: what changed, on whose action (an account id, or "cli:<user>")
CREATE TABLE IF NOT EXISTS identity.account_changes (
    change_id bigserial PRIMARY KEY,
    account_id text NOT NULL,
    actor text NOT NULL,
    change text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb,   -- never personal data
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS account_changes_by_account
    ON identity.account_changes (account_id, change_id);

CREATE TABLE IF NOT EXISTS identity.recovery_codes (
    account_id text NOT NULL REFERENCES identity.accounts (account_id),
    code_hash text NOT NULL,                     -- SHA-256 of a random code
    used_at timestamptz,
    PRIMARY KEY (account_id, code_hash)
);

CREATE TABLE IF NOT EXISTS identity.sessions (
    session_id text PRIMARY KEY,
    account_id text NOT NULL REFERENCES identity.accounts (account_id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_reason text
);
CREATE INDEX IF NOT EXISTS sessions_by_account ON identity.sessions (account_id);

-- every refresh token issued; spent once used. A spent one presented again revokes its session
CREATE TABLE IF NOT EXISTS identity.refresh_tokens (
    token_hash text PRIMARY KEY,                 -- SHA-256 of the random token
    session_id text NOT NULL REFERENCES identity.sessions (session_id),
    issued_at timestamptz NOT NULL DEFAULT now(),
    spent_at timestamptz
);
CREATE INDEX IF NOT EXISTS refresh_tokens_by_session ON identity.refresh_tokens (session_id);
