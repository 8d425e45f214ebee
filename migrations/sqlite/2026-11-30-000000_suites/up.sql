-- Suites (sqlite flavour; keep in step with the other backend).
-- run_suites: what a run scheduled from a suite is pinned to, written in the same
-- transaction as the run. Every job of the run carries the same refs in its config.
CREATE TABLE run_suites (
    run_id BIGINT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    suite_repo TEXT NOT NULL,
    suite_branch TEXT NOT NULL,
    suite_sha1 TEXT NOT NULL,
    teuthology_branch TEXT NOT NULL,
    teuthology_sha1 TEXT NOT NULL,
    seed BIGINT NOT NULL,
    subset TEXT,
    email TEXT,
    results_timeout_s BIGINT,
    rerun_of TEXT,
    -- When the run's end was noticed and its summary written (and mailed).
    summary_at BIGINT
);
