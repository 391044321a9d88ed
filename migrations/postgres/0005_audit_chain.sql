-- The audit hash chain (ADR 0010): one link per event of each context's log.
-- link(n) = sha256(link(n-1) || position || aggregate id || version || topic || stored state)
-- A sealer appends links as the log grows; `flightbook audit integrity` recomputes the
-- chain from the log and reports the first position where it no longer matches.
CREATE SCHEMA IF NOT EXISTS audit;
CREATE TABLE IF NOT EXISTS audit.chain (
    context text NOT NULL,
    position bigint NOT NULL,
    link bytea NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (context, position)
);
