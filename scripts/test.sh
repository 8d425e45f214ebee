#!/usr/bin/env bash
# Runs cuttle's whole test suite the way CI does: formatting, clippy, and every test
# against real services. Brings up what is missing: beanstalkd (installed if absent; each
# test starts its own on a free port) and PostgreSQL (a throwaway trust-auth cluster when
# nothing usable answers at 127.0.0.1:5432). Needs root (or sudo) only to install packages.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cuttle-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

say() { printf '==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then
        say "apt-get update"
        as_root apt-get update -qq
        apt_updated=1
    fi
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# --- beanstalkd: the tests start their own copies; they only need the binary.
command -v beanstalkd >/dev/null || apt_install beanstalkd
# --- openssl: the TLS tests make a throwaway CA and server certificate with it.
command -v openssl >/dev/null || apt_install openssl
# --- git: suite repositories are cached clones.
command -v git >/dev/null || apt_install git
# --- sshd and sudo: one lab test runs a teuthology job over ssh on a real node (an sshd
# of the test's own on 127.0.0.1:22; teuthology runs the job's commands with sudo).
[ -x /usr/sbin/sshd ] || apt_install openssh-server
command -v sudo >/dev/null || apt_install sudo
# --- systemd's tools and unshare: the install test runs systemd-sysusers, -tmpfiles and
# -analyze on a scratch root; the journald test catches logs in a mount namespace.
command -v systemd-analyze >/dev/null || apt_install systemd
command -v unshare >/dev/null || apt_install util-linux
# --- sqlite3: the backup test runs the operator guide's recipes (pg_dump and
# pg_restore come with postgresql-client, below).
command -v sqlite3 >/dev/null || apt_install sqlite3
# --- chromium: a lab test renders the status page in a real headless browser.
[ -x /usr/bin/chromium ] || apt_install chromium
# --- teuthology 1.3.0 from PyPI, in a cached venv: the suite tests compare cuttle's
# expansion with the real teuthology-suite on generated trees.
teuthology_venv="${CUTTLE_TEUTHOLOGY_VENV:-$HOME/.cache/cuttle-teuthology-venv}"
if [ ! -x "$teuthology_venv/bin/teuthology-suite" ]; then
    command -v python3 >/dev/null || apt_install python3 python3-venv python3-pip
    python3 -m venv "$teuthology_venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$teuthology_venv"; }
    say "installing teuthology 1.3.0 into $teuthology_venv"
    "$teuthology_venv/bin/pip" install -q teuthology==1.3.0
fi
export CUTTLE_TEUTHOLOGY_VENV="$teuthology_venv"

# --- PostgreSQL: use the server at 127.0.0.1:5432 if it takes trust logins as postgres,
# otherwise start a throwaway cluster and point the tests at it.
pg_trust_ok() { # $1 = port
    command -v psql >/dev/null &&
        psql "postgres://postgres@127.0.0.1:$1/postgres" -Atqc 'select 1' >/dev/null 2>&1
}
command -v psql >/dev/null || apt_install postgresql-client
pg_dir=""
cleanup() {
    if [ -n "$pg_dir" ]; then
        as_root su postgres -s /bin/sh -c "$pg_ctl -D '$pg_dir/data' -m immediate stop" >/dev/null 2>&1 || true
        rm -rf "$pg_dir"
    fi
}
trap cleanup EXIT
if [ -n "${CUTTLE_TEST_POSTGRES:-}" ]; then
    say "PostgreSQL for tests: CUTTLE_TEST_POSTGRES (as given)"
elif pg_trust_ok 5432; then
    say "PostgreSQL for tests: 127.0.0.1:5432"
else
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$pg_bin" ]; then
        apt_install postgresql postgresql-client
        pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    pg_ctl="$pg_bin/pg_ctl"
    port=55432
    pg_dir=$(mktemp -d /tmp/cuttle-pg.XXXXXX)
    chown postgres "$pg_dir" 2>/dev/null || as_root chown postgres "$pg_dir"
    say "starting a throwaway PostgreSQL on 127.0.0.1:$port"
    as_root su postgres -s /bin/sh -c "$pg_bin/initdb -D '$pg_dir/data' -A trust -U postgres >/dev/null"
    as_root su postgres -s /bin/sh -c "$pg_ctl -D '$pg_dir/data' -l '$pg_dir/log' -w -o \"-p $port -k '$pg_dir' -c listen_addresses=127.0.0.1\" start >/dev/null"
    export CUTTLE_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
    pg_trust_ok "$port" || { echo "throwaway PostgreSQL did not come up; see $pg_dir/log" >&2; exit 1; }
fi

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "cargo test"
cargo test --workspace --locked

# The binaries must carry their own SQLite and libpq: a lab host needs no -dev packages.
say "checking the daemons link no system libpq or libsqlite3"
for bin in cuttle-api cuttle; do
    if ldd "$CARGO_TARGET_DIR/debug/$bin" | grep -E 'libpq|libsqlite3'; then
        echo "$bin links a system database library; keep pq-sys/libsqlite3-sys bundled" >&2
        exit 1
    fi
done
