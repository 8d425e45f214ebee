#!/bin/sh
# Fetches the Parallel Workloads Archive traces docs/simulator.md measures into
# workloads/traces/ (not committed: the archive's files are theirs; their header
# comments, which name whom to acknowledge, are kept as they are), gunzips them, and
# checks each against the SHA-256 the measurements were made on. Each trace is tried
# from the public GitHub copy it was taken from (pinned to a commit), then from the
# archive itself (https://www.cs.huji.ac.il/labs/parallel/workload/); a copy whose
# checksum differs is refused, since its numbers would not be the documented ones.
#
#   scripts/fetch-traces.sh            # all traces
#   cuttle-sim --workload workloads/traces/KTH-SP2-1996-2.1-cln.swf
set -eu

cd "$(dirname "$0")/../workloads"
mkdir -p traces
cd traces

archive=https://www.cs.huji.ac.il/labs/parallel/workload
github=https://raw.githubusercontent.com

# name | sha256 of the .swf | GitHub copy | archive copy
#
# HPC2N-2002-alea-3171.swf is not the archive's cleaned HPC2N log but the cut the Alea
# simulator ships as data-set/hpc2n.swf: the archive's header, then the first 3,171 jobs
# (job numbers 1 to 7183, 57 days of the Seth cluster, 240 processors); there is no
# archive copy of exactly that cut, so only the pinned GitHub copy is tried.
# lublin-aaroh.swf, like lublin_256.swf, is the Lublin-Feitelson model, not a trace.
# Which traces the policy was tuned on and which were held back: docs/simulator.md.
traces="
KTH-SP2-1996-2.1-cln.swf|fba36494c4e4257f72182e8b629ebb0bcb054b3b82851ef957445bd627adcc87|$github/jankopanski/Burst-Buffer-Scheduling/55cbeede02a85086c93e00bcb9a110c27201b1bc/workloads/swf/KTH-SP2-1996-2.1-cln.swf|$archive/l_kth_sp2/KTH-SP2-1996-2.1-cln.swf.gz
NASA-iPSC-1993-3.1-cln.swf|9d997a2c20a7f7b0b6d81638d756ce8b2c524c4f2e9ec78da36001743ca33d76|$github/cloudsimplus/cloudsimplus-examples/4394086de1dee68fd5d96cf818f92410bb660dfd/src/main/resources/workload/swf/NASA-iPSC-1993-3.1-cln.swf.gz|$archive/l_nasa_ipsc/NASA-iPSC-1993-3.1-cln.swf.gz
lublin_256.swf|a394ab3d81179ebcf645a1cbd593a60b6dff7f11a510e1e6285c45f43310c962|$github/DIR-LAB/deep-batch-scheduler/cd433e3d62a01705f255bd48cb55b393862800e7/data/lublin_256.swf|
HPC2N-2002-alea-3171.swf|eaaccb339ef0f313d1b975cf02cc518b7cc012fb0c609ef2af2dbd0291aa74ba|$github/aleasimulator/alea/952b600d57cf1cdb11b88ecfca897691ce860b47/Alea/data-set/hpc2n.swf|
lublin-aaroh.swf|f575561c991fc4da6b212b0d76115eb38fd0d83cb6437803f6298470f684479c|$github/DIR-LAB/deep-batch-scheduler/4bc321a1b1bd72b778b49c62f270e8996db1233f/data/lublin-aaroh.swf|
"

fetch() {
    # $1: URL, $2: the .swf to write (gunzipped when the URL ends in .gz)
    case "$1" in
        *.gz) curl -fsSL "$1" | gunzip >"$2.part" ;;
        *) curl -fsSL "$1" >"$2.part" ;;
    esac
}

failed=0
echo "$traces" | while IFS='|' read -r name sha copy original; do
    [ -n "$name" ] || continue
    if [ -f "$name" ] && echo "$sha  $name" | sha256sum -c --status; then
        echo "$name: present"
        continue
    fi
    got=no
    for url in $copy $original; do
        if fetch "$url" "$name" 2>/dev/null && echo "$sha  $name.part" | sha256sum -c --status; then
            mv "$name.part" "$name"
            echo "$name: fetched from $url"
            got=yes
            break
        fi
        rm -f "$name.part"
        echo "$name: $url failed or its checksum differs" >&2
    done
    if [ "$got" = no ]; then
        echo "$name: NOT fetched" >&2
        failed=1
    fi
    [ "$failed" = 0 ] || exit 1
done
