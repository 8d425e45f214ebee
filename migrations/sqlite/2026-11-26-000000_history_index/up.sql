-- The dispatcher's estimates read the last runs of each waiting job's description on every
-- planning round (up to a window of 256 jobs): look them up by description, newest first.
CREATE INDEX jobs_description_history ON jobs (description, updated_at);
