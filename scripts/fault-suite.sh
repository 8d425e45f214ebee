#!/usr/bin/env bash
# The fault suite in full: ${CUTTLE_FAULT_JOBS:-600} jobs per backend (CI runs 120) while
# the dispatcher, a supervisor, cuttle-api, beanstalkd and the database fail in turn; see
# docs/reliability.md. Needs what scripts/test.sh needs (beanstalkd, PostgreSQL at
# CUTTLE_TEST_POSTGRES or 127.0.0.1:5432). Prints one summary line per backend.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cuttle-target}"
export CUTTLE_FAULT_JOBS="${CUTTLE_FAULT_JOBS:-600}"
# The suite's binaries (dispatcher, supervisor, local runner) are built by the workspace.
cargo build --workspace --locked --quiet
log=$(mktemp)
status=0
cargo test -p cuttle-dispatcher --test lab --locked -- --test-threads 1 --nocapture fault_suite \
    >"$log" 2>&1 || status=$?
grep -oE 'fault suite \(.*|^test result.*|panicked.*|FAILED.*|^job .*|^faults:.*' "$log" || true
[ "$status" -eq 0 ] || echo "the fault suite failed; full output in $log" >&2
exit "$status"
