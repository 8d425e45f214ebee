DROP TABLE tokens;
ALTER TABLE jobs DROP COLUMN prepare_retries;
ALTER TABLE nodes DROP COLUMN prepare_strikes;
DROP TABLE lock_events;
