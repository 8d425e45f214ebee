-- Reliability (sqlite flavour; keep in step with the other backend).
-- lock_events: every lock and unlock of a node, appended in the same transaction as the
-- change itself, so `cuttle admin audit` can replay it and prove no node was ever held by
-- two holders at once. For an unlock, holder/job_id name the lock that was removed.
CREATE TABLE lock_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    action TEXT NOT NULL,
    holder TEXT NOT NULL,
    job_id BIGINT,
    by_whom TEXT NOT NULL DEFAULT '',
    at BIGINT NOT NULL
);
CREATE INDEX lock_events_node ON lock_events (node, id);
-- Locks taken before the history existed start it.
INSERT INTO lock_events (node, action, holder, job_id, by_whom, at)
    SELECT name, 'lock', locked_by, locked_job_id, 'history start', COALESCE(locked_since, updated_at)
    FROM nodes WHERE locked_by IS NOT NULL;

-- Consecutive failed prepares (reimages) of a node; reset by a successful one. At the
-- configured maximum the node is marked down.
ALTER TABLE nodes ADD COLUMN prepare_strikes INTEGER NOT NULL DEFAULT 0;
-- How many times a job went back to the queue because its nodes could not be prepared.
ALTER TABLE jobs ADD COLUMN prepare_retries INTEGER NOT NULL DEFAULT 0;

-- API tokens: only the SHA-256 of each token is kept (hex), with the first characters of
-- the token itself so people can tell tokens apart in a listing. A revoked token stays,
-- with when it was revoked.
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_name TEXT NOT NULL,
    role TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT
);
