#!/usr/bin/env bash
# Sets up and runs a local cuttle lab on the embedded defaults: installs beanstalkd if
# needed, builds cuttle, starts beanstalkd, cuttle-api (SQLite under ./cuttle-lab) and a
# cuttle-dispatcher, adds simulated nodes, and runs a demo: jobs that pass, fail, and run
# past their time limit, simulated by cuttle-local-runner, with their logs archived under
# ./cuttle-lab/archive. Everything it starts keeps running in the background;
# `scripts/local-lab.sh stop` stops it, `... status` shows it.
set -euo pipefail
cd "$(dirname "$0")/.."

lab_dir="${CUTTLE_LAB_DIR:-$PWD/cuttle-lab}"
api_port="${CUTTLE_LAB_API_PORT:-7171}"
http_port="${CUTTLE_LAB_HTTP_PORT:-7172}"
metrics_port="${CUTTLE_LAB_DISPATCHER_METRICS_PORT:-7191}"
beanstalk_port="${CUTTLE_LAB_BEANSTALK_PORT:-11300}"
machine_type="${CUTTLE_LAB_MACHINE_TYPE:-smithi}"
n_nodes="${CUTTLE_LAB_NODES:-8}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cuttle-target}"
bin="$CARGO_TARGET_DIR/release"
export CUTTLE_API="http://127.0.0.1:$api_port"

say() { printf '==> %s\n' "$*"; }

stop() {
    for name in cuttle-dispatcher cuttle-api beanstalkd; do
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
        for name in beanstalkd cuttle-api cuttle-dispatcher; do
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
cargo build --release --locked -p cuttle-api -p cuttle-cli -p cuttle-dispatcher -p cuttle-supervisor

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
        --beanstalk "127.0.0.1:$beanstalk_port" --http-listen "127.0.0.1:$http_port" \
        --archive-root "$lab_dir/archive" >"$lab_dir/cuttle-api.log" 2>&1 &
    echo $! >"$lab_dir/cuttle-api.pid"
fi

say "waiting for cuttle-api"
for _ in $(seq 1 100); do
    "$bin/cuttle" health >/dev/null 2>&1 && break
    running cuttle-api || { echo "cuttle-api exited; see $lab_dir/cuttle-api.log:" >&2; tail -n 20 "$lab_dir/cuttle-api.log" >&2; exit 1; }
    sleep 0.1
done
"$bin/cuttle" health

# Every change needs a token. This script acts as the lab's admin, with the bootstrap
# token cuttle-api wrote on its first start (mode 0600).
export CUTTLE_TOKEN
CUTTLE_TOKEN=$(cat "$lab_dir/admin.token")
# The dispatcher (and the supervisors it starts) act with a service token of their own.
# (Made anew when cuttle-api does not know the one on file, e.g. after a fresh database.)
if [ ! -s "$lab_dir/dispatcher.token" ] ||
    ! "$bin/cuttle" --token "$(cat "$lab_dir/dispatcher.token")" admin whoami 2>/dev/null | grep -q service; then
    say "creating the dispatcher's service token ($lab_dir/dispatcher.token)"
    (umask 077 && "$bin/cuttle" admin token create --user "dispatcher-$machine_type" --role service \
        | tail -n 1 >"$lab_dir/dispatcher.token")
fi

existing=$("$bin/cuttle" node list --machine-type "$machine_type" --json | grep -c '"name"' || true)
if [ "$existing" -lt "$n_nodes" ]; then
    say "adding $n_nodes simulated $machine_type nodes"
    for i in $(seq 1 "$n_nodes"); do
        "$bin/cuttle" node add "$(printf '%s%03d' "$machine_type" "$i")" --machine-type "$machine_type" \
            --description "simulated node" >/dev/null 2>&1 || true
    done
fi
"$bin/cuttle" node list --machine-type "$machine_type"

if running cuttle-dispatcher; then
    say "cuttle-dispatcher already running"
else
    say "starting cuttle-dispatcher for $machine_type (archive $lab_dir/archive, log $lab_dir/cuttle-dispatcher.log)"
    "$bin/cuttle-dispatcher" --machine-type "$machine_type" --api "$CUTTLE_API" \
        --beanstalk "127.0.0.1:$beanstalk_port" --archive-dir "$lab_dir/archive" \
        --token-file "$lab_dir/dispatcher.token" --metrics-listen "127.0.0.1:$metrics_port" \
        --runner-command '{bin_dir}/cuttle-local-runner --job-config {job_config} --archive {archive}' \
        >"$lab_dir/cuttle-dispatcher.log" 2>&1 &
    echo $! >"$lab_dir/cuttle-dispatcher.pid"
fi

# The local runner reads `runtime` (seconds) and `status` (pass|fail) from each job's config.
stamp=$(date -u +%Y%m%d-%H%M%S)
printf 'runtime: 2\nstatus: pass\n' >"$lab_dir/demo-pass.yaml"
printf 'runtime: 1\nstatus: fail\n' >"$lab_dir/demo-fail.yaml"
printf 'runtime: 600\nstatus: pass\n' >"$lab_dir/demo-slow.yaml"
say "scheduling a demo: 4 jobs that pass, 2 that fail, 1 that runs past its 3 s time limit"
runs=("demo-$stamp-pass" "demo-$stamp-fail" "demo-$stamp-timeout")
"$bin/cuttle" schedule "$lab_dir/demo-pass.yaml" --name "${runs[0]}" --machine-type "$machine_type" --nodes 2 --jobs 4 >/dev/null
"$bin/cuttle" schedule "$lab_dir/demo-fail.yaml" --name "${runs[1]}" --machine-type "$machine_type" --jobs 2 >/dev/null
"$bin/cuttle" schedule "$lab_dir/demo-slow.yaml" --name "${runs[2]}" --machine-type "$machine_type" --time-limit 3 >/dev/null
"$bin/cuttle" queue list "$machine_type"

say "waiting for the demo runs to finish"
for _ in $(seq 1 120); do
    alive=0
    for run in "${runs[@]}"; do
        if "$bin/cuttle" run show "$run" --json | grep -Eq '"status": *"(queued|waiting|running)"'; then
            alive=1
        fi
    done
    [ "$alive" -eq 0 ] && break
    running cuttle-dispatcher || { echo "cuttle-dispatcher exited; see $lab_dir/cuttle-dispatcher.log:" >&2; tail -n 20 "$lab_dir/cuttle-dispatcher.log" >&2; exit 1; }
    sleep 1
done
for run in "${runs[@]}"; do
    "$bin/cuttle" run show "$run"
    echo
done
"$bin/cuttle" node list --machine-type "$machine_type"
say "each job's logs: $lab_dir/archive/RUN/JOB/ (config.yaml, runner.log, supervisor.log, summary.yaml), served at http://127.0.0.1:$http_port/archive/RUN/JOB/"
ls "$lab_dir/archive/${runs[2]}"/*/

cat <<MSG

The lab is running: cuttle-api at $CUTTLE_API, beanstalkd at 127.0.0.1:$beanstalk_port,
a cuttle-dispatcher for $machine_type (log: $lab_dir/cuttle-dispatcher.log).
Status page:  http://127.0.0.1:$http_port/   (runs, queues with estimated starts, nodes, logs)
Metrics:      http://127.0.0.1:$http_port/metrics (cuttle-api), http://127.0.0.1:$metrics_port/metrics (dispatcher)
Try:   export CUTTLE_API=$CUTTLE_API PATH=$bin:\$PATH
       export CUTTLE_TOKEN=\$(cat $lab_dir/admin.token)   # changes need a token; reads do not
       cuttle run list; cuttle job show ID; cuttle queue list $machine_type
       printf 'runtime: 5\\nstatus: pass\\n' > job.yaml
       cuttle schedule job.yaml --machine-type $machine_type --jobs 20
       cuttle admin token create --user alice --role developer   # a developer's own token
Stop:  scripts/local-lab.sh stop
MSG
