DROP TABLE run_suites;
