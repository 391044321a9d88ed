-- The relay's checkpoint per bounded context: the last position of the context's event
-- log that the broker has acknowledged (or that was private and needed no message).
-- It only moves forward (the relay's upsert ignores older positions); after a crash the
-- relay resumes after it, so events can be published twice but never skipped.
CREATE SCHEMA IF NOT EXISTS relay;
CREATE TABLE IF NOT EXISTS relay.checkpoints (
    context text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
