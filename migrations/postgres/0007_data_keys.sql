-- Envelope encryption of personal data (ADR 0017, builds on ADR 0009).
-- A data key per customer and generation, stored only wrapped (AES-256-GCM) by a
-- key-encryption key (KEK) that never lives in the database (FLIGHTBOOK_KEK_FILE).
-- Erasure sets wrapped = NULL: every value sealed under that key then reads "[erased]";
-- the next seal for the customer makes a new key (an erased customer can book again).
CREATE TABLE IF NOT EXISTS pii.data_keys (
    key_id uuid PRIMARY KEY,
    subject_id text NOT NULL,
    wrapped bytea,                   -- NULL once erased
    kek_id text NOT NULL,            -- which KEK wrapped it (rotation rewraps the old ones)
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz
);
CREATE INDEX IF NOT EXISTS data_keys_by_subject ON pii.data_keys (subject_id);
-- at most one live key per subject: two processes making one at once agree on it
CREATE UNIQUE INDEX IF NOT EXISTS data_keys_one_live_per_subject
    ON pii.data_keys (subject_id) WHERE wrapped IS NOT NULL;
CREATE INDEX IF NOT EXISTS data_keys_by_kek ON pii.data_keys (kek_id) WHERE wrapped IS NOT NULL;

-- Keys from before the hierarchy (pii1 values): `flightbook privacy rotate-kek` wraps each
-- raw key in place (wrapped, kek_id) and clears `key`, in one UPDATE of the subject's row,
-- so a concurrent erasure of that row can never leave a copy behind.
ALTER TABLE pii.subject_keys
    ADD COLUMN IF NOT EXISTS wrapped bytea,
    ADD COLUMN IF NOT EXISTS kek_id text;
