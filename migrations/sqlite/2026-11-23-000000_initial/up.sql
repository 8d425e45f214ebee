-- cuttle's initial schema, SQLite flavour. Keep column types in step with
-- migrations/postgres: crates/cuttle-db/src/schema.rs describes both.
-- Times are BIGINT Unix milliseconds; a node is locked iff locked_by IS NOT NULL.

CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    branch TEXT NOT NULL DEFAULT '',
    sha1 TEXT NOT NULL DEFAULT '',
    suite TEXT NOT NULL DEFAULT '',
    machine_type TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX runs_owner ON runs (owner);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    description TEXT NOT NULL,
    machine_type TEXT NOT NULL,
    priority INTEGER NOT NULL,
    n_nodes INTEGER NOT NULL,
    time_limit_s INTEGER,
    os_type TEXT NOT NULL DEFAULT '',
    os_version TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    reason TEXT,
    beanstalk_id BIGINT,
    config_yaml TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    heartbeat_at BIGINT
);
CREATE INDEX jobs_run_id ON jobs (run_id);
CREATE INDEX jobs_status ON jobs (status);
CREATE INDEX jobs_machine_type ON jobs (machine_type);

CREATE TABLE job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX job_events_job_id ON job_events (job_id);

CREATE TABLE nodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    machine_type TEXT NOT NULL,
    up BOOLEAN NOT NULL DEFAULT TRUE,
    locked_by TEXT,
    locked_job_id BIGINT,
    locked_since BIGINT,
    description TEXT NOT NULL DEFAULT '',
    os_type TEXT NOT NULL DEFAULT '',
    os_version TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX nodes_machine_type ON nodes (machine_type, up, locked_by);
CREATE INDEX nodes_locked_job_id ON nodes (locked_job_id);
