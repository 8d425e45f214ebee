DROP TABLE tubes;
ALTER TABLE jobs DROP COLUMN started_at;
ALTER TABLE jobs DROP COLUMN supervisor_host;
ALTER TABLE jobs DROP COLUMN supervisor_pid;
ALTER TABLE jobs DROP COLUMN dispatcher;
