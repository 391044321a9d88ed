-- Idempotency keys of POST /bookings, written in the same transaction as the booking's
-- first event, so a retried request returns the first answer and a concurrent duplicate
-- creates nothing.
CREATE TABLE IF NOT EXISTS booking.idempotency_keys (
    customer_id text NOT NULL,
    idempotency_key text NOT NULL,
    request_hash text NOT NULL,
    booking_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, idempotency_key)
);

-- The saga's durable to-do list: work that waits for a time (hold expiry) or for an
-- external system (the payment gateway). Rows are written in the same transaction as
-- the events that make them necessary, and removed with the events that complete them.
CREATE SCHEMA IF NOT EXISTS saga;
CREATE TABLE IF NOT EXISTS saga.jobs (
    booking_id uuid NOT NULL,
    kind text NOT NULL,               -- authorize_payment | expire_hold | settle_payment
    due_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    correlation_id text NOT NULL DEFAULT '',  -- of the request that started the booking
    last_error text,
    PRIMARY KEY (booking_id, kind)
);
CREATE INDEX IF NOT EXISTS jobs_due_at_idx ON saga.jobs (due_at);
