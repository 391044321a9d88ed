-- Crypto-shredding (ADR 0009): personal data in events is sealed with a key per data
-- subject (the customer). Erasing the subject deletes the key; the events stay as they
-- are, but their personal data can no longer be read by anyone.
CREATE SCHEMA IF NOT EXISTS pii;
CREATE TABLE IF NOT EXISTS pii.subject_keys (
    subject_id text PRIMARY KEY,
    key bytea,                       -- NULL once erased
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz
);
