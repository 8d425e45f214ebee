#!/usr/bin/env bash
# Records what teuthology-suite 1.3.0 schedules for each case in cases.txt, as the
# expected output of tests/teuthology_parity.rs. Needs a venv with teuthology 1.3.0
# (TEUTHOLOGY_VENV, default ~/.cache/cuttle-teuthology-venv). teuthology 1.3.0 sometimes
# drops jobs it should keep (its Lua filter state is corrupted between jobs and it logs
# "not matching filter-all" with no filter given), so each case runs until two runs
# agree and that list is kept.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${TEUTHOLOGY_VENV:-$HOME/.cache/cuttle-teuthology-venv}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$work" init -q -b main teuthology
git -C "$work/teuthology" -c user.email=t@t -c user.name=t commit -q --allow-empty -m t
cat > "$work/teuthology.yaml" <<YAML
lock_server: ''
results_server: ''
teuthology_path: $work/teuthology
suite_verify_ceph_hash: false
YAML
cat > "$work/wrongly.py" <<'PY'
import re, sys
log, args = sys.argv[1], sys.argv[2:]
given = {"--filter": [], "--filter-all": [], "--filter-out": []}
for flag, value in zip(args, args[1:]):
    if flag in given:
        given[flag] += [v.strip() for v in value.split(",") if v.strip()]
genuine = {"not matching filter-all: " + f for f in given["--filter-all"]}
genuine |= {"matching --filter-out: " + f for f in given["--filter-out"]}
genuine.add("not matching any --filter: " + repr(given["--filter"]))
reason = None
for line in open(log):
    m = re.search(r"dropping job due to (.*)$", line)
    if m:
        reason = m.group(1)
        continue
    m = re.search(r"skipping config (.*) due to postmerge filter$", line)
    if m and reason is not None:
        desc = m.group(1)
        passes = (all(f in desc for f in given["--filter-all"])
                  and (not given["--filter"] or any(f in desc for f in given["--filter"]))
                  and not any(f in desc for f in given["--filter-out"]))
        if reason not in genuine and "mismatch with" not in reason and passes:
            print(desc)
        reason = None
PY
while IFS='|' read -r name args; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  previous=""
  for attempt in 1 2 3 4 5 6; do
    # shellcheck disable=SC2086
    TEUTHOLOGY_CONFIG="$work/teuthology.yaml" "$venv/bin/teuthology-suite" --dry-run -v \
      -c main -S 0123456789abcdef0123456789abcdef01234567 --suite-branch main \
      --suite-sha1 abc --validate-sha1 false -m smithi -k none --arch x86_64 \
      --job-threshold 0 --suite-dir "$here/ceph" $args > "$work/log" 2>&1
    current="$(grep -o 'INFO:teuthology.suite.run:Scheduling .*' "$work/log" | sed 's/^INFO:teuthology.suite.run:Scheduling //' || true)"
    if [[ -n "$previous" && "$current" == "$previous" ]]; then break; fi
    previous="$current"
  done
  grep -q "Scheduled [0-9]* jobs in total" "$work/log" || { echo "$name: teuthology failed: $(grep -v "^ " "$work/log" | tail -1)"; exit 1; }
  # Jobs teuthology dropped for a filter that was never given (its corrupted Lua
  # state): each shows as a drop whose stated filter is not one of the case's own,
  # of a job whose description passes the case's filters.
  # shellcheck disable=SC2086
  wrongly="$(python3 "$work/wrongly.py" "$work/log" $args)"
  {
    echo "# teuthology-suite $args"
    while IFS= read -r job; do
      [[ -n "$job" ]] && echo "# wrongly dropped by teuthology: $job"
    done <<< "$wrongly"
    printf '%s\n' "$current"
  } > "$here/teuthology/$name.txt"
  echo "$name: $(printf '%s\n' "$current" | grep -c . || true) jobs${wrongly:+, $(printf '%s\n' "$wrongly" | grep -c .) wrongly dropped by teuthology}"
done < "$here/cases.txt"
