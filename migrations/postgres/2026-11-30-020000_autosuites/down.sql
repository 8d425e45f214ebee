DROP TABLE autosuite_events;
DROP TABLE autosuites;
