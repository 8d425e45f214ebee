#!/bin/sh
# Tells cuttle-api that a ceph build ended: the signed POST of /webhook/build-status.
# Call it from ceph-build's submit_final_status (see docs/builds.md), once per build:
#
#   cuttle-build-status.sh URL SECRET_FILE REF STATUS BUILD_URL [DISTRO DISTRO_VERSION FLAVOR SHA1]
#
#   URL          cuttle-api's HTTP listener, e.g. http://cuttle.front.sepia.ceph.com:7180
#   SECRET_FILE  the file holding the shared secret (cuttle-api's webhook_secret_file)
#   REF          the branch built, e.g. wip-sage-testing
#   STATUS       completed or failed
#   BUILD_URL    the Jenkins build's URL (kept with AutoSuites whose build failed)
#   DISTRO ...   what was built, e.g. centos 9 default 5d4e3c2b... (optional, in order)
#
# Needs sh, openssl and curl. Exits non-zero (with cuttle-api's answer on stderr) when the
# request is refused; prints cuttle-api's JSON answer on success.
set -eu
if [ "$#" -lt 5 ]; then
    sed -n '4,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
url=$1 secret_file=$2 ref=$3 status=$4 build_url=$5
distro=${6:-} distro_version=${7:-} flavor=${8:-} sha1=${9:-}
json_string() { # a JSON string of $1 (branch names and URLs hold no control characters)
    printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}
body=$(printf '{"url": %s, "ref": %s, "status": %s, "distro": %s, "distro_version": %s, "flavor": %s, "sha1": %s}' \
    "$(json_string "$build_url")" "$(json_string "$ref")" "$(json_string "$status")" \
    "$(json_string "$distro")" "$(json_string "$distro_version")" "$(json_string "$flavor")" \
    "$(json_string "$sha1")")
secret=$(sed 's/^[[:space:]]*//; s/[[:space:]]*$//' "$secret_file")
timestamp=$(date +%s)
signature=$(printf '%s.%s' "$timestamp" "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= *//')
curl --silent --show-error --fail-with-body --max-time 30 \
    -H 'Content-Type: application/json' \
    -H "X-Cuttle-Timestamp: $timestamp" \
    -H "X-Cuttle-Signature: sha256=$signature" \
    --data-binary "$body" \
    "${url%/}/webhook/build-status"
echo
