DROP TABLE nodes;
DROP TABLE job_events;
DROP TABLE jobs;
DROP TABLE runs;
