-- Event store: one schema per bounded context, tables as eventsourcing 9.5 expects them
-- (ADR 0004). The library's own CREATE_TABLE is off: this file is the only DDL.
-- Each context's table also has a tracking table, so the saga can record how far it
-- followed another context's log in the same transaction as the events it decided.

CREATE SCHEMA IF NOT EXISTS booking;
CREATE TABLE IF NOT EXISTS "booking"."bookings_events" (originator_id "uuid" NOT NULL, originator_version bigint NOT NULL, topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version)) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01);
CREATE TYPE "booking"."stored_event_uuid" AS (originator_id "uuid", originator_version bigint, topic text, state bytea);
CREATE UNIQUE INDEX IF NOT EXISTS "bookings_events_notification_id_idx" ON "booking"."bookings_events" (notification_id ASC);
CREATE TABLE IF NOT EXISTS "booking"."bookings_tracking" (application_name text, notification_id bigint, PRIMARY KEY (application_name))WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01);

CREATE SCHEMA IF NOT EXISTS inventory;
CREATE TABLE IF NOT EXISTS "inventory"."inventory_events" (originator_id "uuid" NOT NULL, originator_version bigint NOT NULL, topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version)) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01);
CREATE TYPE "inventory"."stored_event_uuid" AS (originator_id "uuid", originator_version bigint, topic text, state bytea);
CREATE UNIQUE INDEX IF NOT EXISTS "inventory_events_notification_id_idx" ON "inventory"."inventory_events" (notification_id ASC);
CREATE TABLE IF NOT EXISTS "inventory"."inventory_tracking" (application_name text, notification_id bigint, PRIMARY KEY (application_name))WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01);

CREATE SCHEMA IF NOT EXISTS payment;
CREATE TABLE IF NOT EXISTS "payment"."payments_events" (originator_id "uuid" NOT NULL, originator_version bigint NOT NULL, topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version)) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01);
CREATE TYPE "payment"."stored_event_uuid" AS (originator_id "uuid", originator_version bigint, topic text, state bytea);
CREATE UNIQUE INDEX IF NOT EXISTS "payments_events_notification_id_idx" ON "payment"."payments_events" (notification_id ASC);
CREATE TABLE IF NOT EXISTS "payment"."payments_tracking" (application_name text, notification_id bigint, PRIMARY KEY (application_name))WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01);
