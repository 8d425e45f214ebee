-- Dispatching (postgres flavour; keep in step with migrations/sqlite).
-- A job records which dispatcher claimed it and which supervisor runs it; a tube (one per
-- machine type) records whether it is paused and which dispatcher holds its lease.

ALTER TABLE jobs ADD COLUMN dispatcher TEXT;
ALTER TABLE jobs ADD COLUMN supervisor_pid BIGINT;
ALTER TABLE jobs ADD COLUMN supervisor_host TEXT;
ALTER TABLE jobs ADD COLUMN started_at BIGINT;

CREATE TABLE tubes (
    machine_type TEXT PRIMARY KEY NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    paused_by TEXT,
    paused_at BIGINT,
    lease_holder TEXT,
    lease_host TEXT,
    lease_pid BIGINT,
    lease_acquired_at BIGINT,
    lease_expires_at BIGINT,
    updated_at BIGINT NOT NULL
);
