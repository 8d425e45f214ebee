-- AutoSuites (sqlite flavour; keep in step with the other backend).
-- A suite request waiting for its build. args holds cuttle-core's RawSuiteArgs as JSON
-- (with the preset already laid under it). state follows cuttle-core's AutoSuiteState;
-- firing claims waiting_for_build -> scheduling first, so one firing wins.
CREATE TABLE autosuites (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    -- The role of the token that added it: firing schedules with it.
    role TEXT NOT NULL DEFAULT 'developer',
    state TEXT NOT NULL,
    branch TEXT NOT NULL,
    sha1 TEXT NOT NULL DEFAULT '',
    distro TEXT NOT NULL DEFAULT '',
    distro_version TEXT NOT NULL DEFAULT '',
    flavor TEXT NOT NULL DEFAULT '',
    args TEXT NOT NULL,
    run_name TEXT,
    reason TEXT,
    build_url TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX autosuites_waiting ON autosuites (state, branch);
-- Every state change of an AutoSuite, in order.
CREATE TABLE autosuite_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    autosuite_id BIGINT NOT NULL REFERENCES autosuites (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    reason TEXT
);
