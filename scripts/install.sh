#!/usr/bin/env bash
# Installs cuttle on a lab's scheduler host (or into a scratch root for a test or an
# image): the five binaries, the systemd units, the sysusers.d and tmpfiles.d snippets
# (the `cuttle` user and group, /var/lib/cuttle, /etc/cuttle), and the example configs,
# never overwriting a config that is already there. Running it again changes nothing
# unless a file it installs has changed. Run `scripts/install.sh --help` for the options.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
binaries=(cuttle-api cuttle cuttle-dispatcher cuttle-supervisor cuttle-local-runner)

usage() {
    cat <<EOF
Usage: scripts/install.sh [--root DIR] [--prefix PREFIX] [--from DIR]

Installs cuttle from a build of this checkout. Build first:
  cargo build --release --locked -p cuttle-api -p cuttle-cli -p cuttle-dispatcher -p cuttle-supervisor

  --root DIR       install into DIR as if it were / (default: /). With a root other
                   than /, nothing on this host changes: no daemon-reload, and the user
                   is created in DIR/etc/passwd.
  --prefix PREFIX  where the binaries go: PREFIX/bin (default: /usr/local). The units'
                   ExecStart= lines are rewritten to match.
  --from DIR       the directory holding the built binaries (default:
                   \$CARGO_TARGET_DIR/release, or target/release in the checkout).
  -h, --help       this text.

What goes where (under DIR):
  PREFIX/bin/{${binaries[*]}}                 0755, all in one directory
  /etc/systemd/system/cuttle-api.service, cuttle-dispatcher@.service  0644
  /usr/lib/sysusers.d/cuttle.conf, /usr/lib/tmpfiles.d/cuttle.conf     0644
  /etc/cuttle/cuttle-api.toml, cuttle-dispatcher.toml       0640 root:cuttle, only if absent
Then systemd-sysusers creates the cuttle user and group, systemd-tmpfiles creates
/var/lib/cuttle (with archive/ and .ssh/) and /etc/cuttle, and, with the root /,
systemctl daemon-reload makes systemd read the units. Needs root.
EOF
}

root=/
prefix=/usr/local
from="${CARGO_TARGET_DIR:-$repo/target}/release"
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root="${2:?--root needs a directory}"; shift 2 ;;
        --root=*) root="${1#--root=}"; shift ;;
        --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        --from) from="${2:?--from needs a directory}"; shift 2 ;;
        --from=*) from="${1#--from=}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

fail() { echo "install.sh: $*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }

[ "$(id -u)" -eq 0 ] || fail "run as root (sudo scripts/install.sh ...): it sets owners and creates a system user"
case "$prefix" in /*) ;; *) fail "--prefix must be an absolute path, not $prefix" ;; esac
for tool in systemd-sysusers systemd-tmpfiles; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install systemd)"
done
for bin in "${binaries[@]}"; do
    [ -x "$from/$bin" ] || fail "no $from/$bin; build first (see --help) or point --from at the binaries"
done
mkdir -p "$root"
root=$(cd "$root" && pwd)
# Paths inside the root: "$root" is "/" or has no trailing slash.
at() { if [ "$root" = / ]; then printf '%s' "$1"; else printf '%s%s' "$root" "$1"; fi; }

# put SOURCE DEST MODE: installs SOURCE as DEST (root-owned) unless DEST already has the
# same content and mode. `install` writes a new file and renames it over DEST, so a
# running supervisor keeps the binary it started with.
put() {
    local source=$1 dest=$2 mode=$3
    if [ -f "$dest" ] && cmp -s "$source" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ] &&
        [ "$(stat -c %u:%g "$dest")" = 0:0 ]; then
        say "unchanged  $dest"
        return
    fi
    install -D -o 0 -g 0 -m "$mode" "$source" "$dest"
    say "installed  $dest"
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# 1. Binaries, all in one directory: the dispatcher starts the supervisor next to it, and
#    the default runner is the cuttle-local-runner next to the supervisor.
for bin in "${binaries[@]}"; do
    put "$from/$bin" "$(at "$prefix/bin/$bin")" 0755
done

# 2. Units, with ExecStart= pointing at PREFIX/bin.
for unit in cuttle-api.service cuttle-dispatcher@.service; do
    sed "s|/usr/local/bin/|${prefix%/}/bin/|g" "$repo/systemd/$unit" >"$scratch/$unit"
    put "$scratch/$unit" "$(at "/etc/systemd/system/$unit")" 0644
done

# 3. The user, group and directories.
put "$repo/systemd/cuttle.sysusers" "$(at /usr/lib/sysusers.d/cuttle.conf)" 0644
put "$repo/systemd/cuttle.tmpfiles" "$(at /usr/lib/tmpfiles.d/cuttle.conf)" 0644
install -d -m 0755 "$(at /etc)"
if [ "$root" = / ]; then
    systemd-sysusers /usr/lib/sysusers.d/cuttle.conf
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/cuttle.conf
else
    # With --root both tools read the file named from this host's side, and resolve
    # user and group names in DIR/etc/passwd and DIR/etc/group.
    systemd-sysusers --root "$root" "$(at /usr/lib/sysusers.d/cuttle.conf)"
    systemd-tmpfiles --create --root "$root" "$(at /usr/lib/tmpfiles.d/cuttle.conf)"
fi
# The group's number as the root knows it (this host's may differ, or not exist).
gid=$(awk -F: '$1 == "cuttle" { print $3 }' "$(at /etc/group)")
[ -n "$gid" ] || fail "systemd-sysusers created no cuttle group in $(at /etc/group)"
say "user       cuttle ($(at /etc/passwd)), directories /var/lib/cuttle and /etc/cuttle"

# 4. Configs: examples to start from, never over an operator's file.
for config in cuttle-api.toml cuttle-dispatcher.toml; do
    dest=$(at "/etc/cuttle/$config")
    if [ -e "$dest" ]; then
        say "kept       $dest (exists; not overwritten: compare with deploy/$config)"
    else
        install -o 0 -g "$gid" -m 0640 "$repo/deploy/$config" "$dest"
        say "installed  $dest (from deploy/$config: edit it)"
    fi
done

# 5. Tell systemd, on this host only.
if [ "$root" != / ]; then
    say "done: installed into $root; nothing on this host was changed"
    exit 0
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    say "systemd    daemon-reload done"
else
    say "systemd    not running here: skipped daemon-reload"
fi
cat <<EOF

Next steps:
  1. beanstalkd: apt-get install beanstalkd; turn on its binlog (systemd/README.md).
  2. Edit /etc/cuttle/cuttle-api.toml and /etc/cuttle/cuttle-dispatcher.toml.
  3. systemctl enable --now cuttle-api
  4. One dispatcher per machine type: systemctl enable --now cuttle-dispatcher@smithi
  5. Check: systemctl status cuttle-api 'cuttle-dispatcher@*'; journalctl -u cuttle-api -n 20
EOF
