DROP INDEX jobs_description_history;
