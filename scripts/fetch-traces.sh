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
wagap-2013.swf|bf5c1cc69915f2d5d26c579f69e206513ceff9bd60e6c4b112182da0c6183ed7|$github/aleasimulator/alea/952b600d57cf1cdb11b88ecfca897691ce860b47/Alea/data-set/wagap-2013.swf|
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

# wagap-2013.swf is the Alea simulator's own variant of SWF: no header, three fields past
# the 18 (CPU ids, queue, resource request) and one negative run time. cuttle-sim reads
# standard SWF, so it gets a copy with the 18 fields, a negative run time read as unknown
# (-1), and a header naming the lab: the two MetaCentrum clusters the log covers (zewura,
# 20 nodes of 80 CPUs; zegox, 48 of 12: Alea's wagap-2013.swf.machines) as one pool of
# 2,176 processors, one processor one node as for every trace here.
converted=MetaCentrum-wagap-2013-alea.swf
converted_sha=d965f9f09076d6f87c009d289f2bf97322cd73da8285b1d61704a7394a595a78
if [ -f wagap-2013.swf ] && ! { [ -f "$converted" ] && echo "$converted_sha  $converted" | sha256sum -c --status; }; then
    {
        echo "; MetaCentrum (CESNET, Czech Republic), clusters zewura and zegox, January to March 2013, as the Alea simulator ships it (Alea/data-set/wagap-2013.swf, acknowledge: Dalibor Klusacek and CESNET MetaCentrum)"
        echo "; Converted by scripts/fetch-traces.sh: the first 18 fields of each line, a negative run time as -1 (unknown)"
        echo "; MaxNodes: 2176"
        echo "; MaxProcs: 2176"
        awk '{ if ($4 < -1) $4 = -1; for (i = 1; i <= 18; i++) printf "%s%s", $i, (i < 18 ? " " : "\n") }' wagap-2013.swf
    } >"$converted.part"
    if echo "$converted_sha  $converted.part" | sha256sum -c --status; then
        mv "$converted.part" "$converted"
        echo "$converted: converted from wagap-2013.swf"
    else
        rm -f "$converted.part"
        echo "$converted: the conversion's checksum differs" >&2
        exit 1
    fi
fi
