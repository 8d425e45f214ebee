-- Presets (sqlite flavour; keep in step with the other backend).
-- A saved suite request per owner: `cuttle suite --preset NAME` lays its flags over it.
-- args holds cuttle-core's RawSuiteArgs as JSON.
CREATE TABLE presets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (owner, name)
);
