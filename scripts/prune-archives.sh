#!/usr/bin/env bash
# Prunes old job archives: removes ARCHIVE_DIR/RUN/ for every run whose files are all
# older than --days and none of whose jobs can still write there (cuttle-api says every
# job of the run ended, or does not know the run). cuttle never deletes archives itself;
# run this from cron or a systemd timer on each host with an archive_dir.
#
#   scripts/prune-archives.sh [--days N] [--dry-run] ARCHIVE_DIR
#
#   --days N     keep runs with any file modified in the last N days (default 90)
#   --dry-run    print what would be removed, remove nothing
#
# Asks cuttle-api through the `cuttle` CLI ($CUTTLE_BIN, default `cuttle` on PATH) at
# $CUTTLE_API (default http://127.0.0.1:7171), with $CUTTLE_TOKEN if reads need one. When
# cuttle-api cannot be asked, nothing is removed.
set -euo pipefail

days=90
dry_run=""
archive=""
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --days) days="${2:?--days needs a number}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "prune-archives: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) [ -z "$archive" ] || { echo "prune-archives: one ARCHIVE_DIR only" >&2; exit 2; }
           archive="$1"; shift ;;
    esac
done
[ -n "$archive" ] || { echo "prune-archives: give the ARCHIVE_DIR (a dispatcher's [lab] archive_dir)" >&2; exit 2; }
[ -d "$archive" ] || { echo "prune-archives: $archive is not a directory" >&2; exit 2; }
case "$days" in ''|*[!0-9]*) echo "prune-archives: --days takes a whole number of days, not '$days'" >&2; exit 2 ;; esac
cuttle="${CUTTLE_BIN:-cuttle}"
command -v "$cuttle" >/dev/null || { echo "prune-archives: no cuttle CLI at '$cuttle'; set CUTTLE_BIN" >&2; exit 2; }
"$cuttle" health >/dev/null 2>&1 || { echo "prune-archives: cuttle-api does not answer at ${CUTTLE_API:-http://127.0.0.1:7171}; removing nothing" >&2; exit 1; }

pruned=0
kept=0
freed_kb=0
for run_dir in "$archive"/*/; do
    [ -d "$run_dir" ] || continue
    run="$(basename "$run_dir")"
    # Any file (or directory) newer than the cut-off keeps the run.
    if [ -n "$(find "$run_dir" -newermt "-$days days" -print -quit)" ]; then
        kept=$((kept + 1))
        continue
    fi
    if answer="$("$cuttle" run show "$run" --json 2>&1)"; then
        if printf '%s' "$answer" | grep -Eq '"status": *"(waiting_for_build|queued|waiting|running)"'; then
            echo "keeping $run: it has jobs that have not ended"
            kept=$((kept + 1))
            continue
        fi
    elif ! printf '%s' "$answer" | grep -qi 'not found\|no run'; then
        echo "prune-archives: cannot ask cuttle-api about $run: $answer; removing nothing more" >&2
        exit 1
    fi
    size_kb="$(du -sk "$run_dir" | cut -f1)"
    if [ -n "$dry_run" ]; then
        echo "would remove $run_dir (${size_kb} KiB)"
    else
        rm -rf -- "$run_dir"
        echo "removed $run_dir (${size_kb} KiB)"
    fi
    pruned=$((pruned + 1))
    freed_kb=$((freed_kb + size_kb))
done
verb="removed"; [ -n "$dry_run" ] && verb="would remove"
echo "prune-archives: $verb $pruned runs (${freed_kb} KiB) older than $days days; kept $kept"
