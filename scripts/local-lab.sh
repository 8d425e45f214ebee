#!/usr/bin/env bash
# Sets up and runs a local cuttle lab on the embedded defaults: installs beanstalkd if
# needed, builds cuttle, starts beanstalkd and cuttle-api (SQLite under ./cuttle-lab),
# adds simulated nodes and schedules a demo run. Everything it starts keeps running in
# the background; `scripts/local-lab.sh stop` stops it, `... status` shows it.
set -euo pipefail
cd "$(dirname "$0")/.."

lab_dir="${CUTTLE_LAB_DIR:-$PWD/cuttle-lab}"
api_port="${CUTTLE_LAB_API_PORT:-7171}"
beanstalk_port="${CUTTLE_LAB_BEANSTALK_PORT:-11300}"
machine_type="${CUTTLE_LAB_MACHINE_TYPE:-smithi}"
n_nodes="${CUTTLE_LAB_NODES:-8}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cuttle-target}"
bin="$CARGO_TARGET_DIR/release"
export CUTTLE_API="http://127.0.0.1:$api_port"

say() { printf '==> %s\n' "$*"; }

stop() {
    for name in cuttle-api beanstalkd; do
        pid_file="$lab_dir/$name.pid"
        if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
            say "stopping $name (pid $(cat "$pid_file"))"
            kill "$(cat "$pid_file")"
        fi
        rm -f "$pid_file"
    done
}

running() { [ -f "$lab_dir/$1.pid" ] && kill -0 "$(cat "$lab_dir/$1.pid")" 2>/dev/null; }

case "${1:-start}" in
    stop) stop; exit 0 ;;
    status)
        for name in beanstalkd cuttle-api; do
            if running "$name"; then echo "$name: running (pid $(cat "$lab_dir/$name.pid"))"; else echo "$name: stopped"; fi
        done
        exit 0 ;;
    start) ;;
    *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

if ! command -v beanstalkd >/dev/null; then
    say "installing beanstalkd"
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq beanstalkd >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq beanstalkd >/dev/null; fi
fi

say "building cuttle (release)"
cargo build --release --locked -p cuttle-api -p cuttle-cli

mkdir -p "$lab_dir"
if running beanstalkd; then
    say "beanstalkd already running"
else
    say "starting beanstalkd on 127.0.0.1:$beanstalk_port"
    beanstalkd -l 127.0.0.1 -p "$beanstalk_port" >"$lab_dir/beanstalkd.log" 2>&1 &
    echo $! >"$lab_dir/beanstalkd.pid"
fi

if running cuttle-api; then
    say "cuttle-api already running"
else
    say "starting cuttle-api on 127.0.0.1:$api_port (database $lab_dir/cuttle.db, log $lab_dir/cuttle-api.log)"
    "$bin/cuttle-api" --listen "127.0.0.1:$api_port" --data-dir "$lab_dir" \
        --beanstalk "127.0.0.1:$beanstalk_port" >"$lab_dir/cuttle-api.log" 2>&1 &
    echo $! >"$lab_dir/cuttle-api.pid"
fi

say "waiting for cuttle-api"
for _ in $(seq 1 100); do
    "$bin/cuttle" health >/dev/null 2>&1 && break
    running cuttle-api || { echo "cuttle-api exited; see $lab_dir/cuttle-api.log:" >&2; tail -n 20 "$lab_dir/cuttle-api.log" >&2; exit 1; }
    sleep 0.1
done
"$bin/cuttle" health

existing=$("$bin/cuttle" node list --machine-type "$machine_type" --json | grep -c '"name"' || true)
if [ "$existing" -lt "$n_nodes" ]; then
    say "adding $n_nodes simulated $machine_type nodes"
    for i in $(seq 1 "$n_nodes"); do
        "$bin/cuttle" node add "$(printf '%s%03d' "$machine_type" "$i")" --machine-type "$machine_type" \
            --description "simulated node" >/dev/null 2>&1 || true
    done
fi
"$bin/cuttle" node list --machine-type "$machine_type"

say "scheduling a demo run of 5 jobs"
run=$("$bin/cuttle" schedule --owner "${USER:-cuttle}" --machine-type "$machine_type" \
    --suite demo --branch main --priority 100 --nodes 2 --jobs 5 --time-limit 600)
"$bin/cuttle" run show "$run"

cat <<MSG

The lab is running: cuttle-api at $CUTTLE_API, beanstalkd at 127.0.0.1:$beanstalk_port.
Try:   export CUTTLE_API=$CUTTLE_API PATH=$bin:\$PATH
       cuttle node list; cuttle run list; cuttle run show $run
Admin: export CUTTLE_TOKEN=\$(cat $lab_dir/admin.token)
Stop:  scripts/local-lab.sh stop
MSG
