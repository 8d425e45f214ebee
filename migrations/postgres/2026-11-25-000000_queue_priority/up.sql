-- The priority of a job's live beanstalkd copy, when it differs from the job's own
-- priority because aging re-put it (NULL: the same).
ALTER TABLE jobs ADD COLUMN queue_priority INTEGER;
