#!/usr/bin/env python3
"""Replays the fetched traces and variants of them under cuttle and EASY, and prints
cuttle's wait over EASY's (mean, p95, max, urgent p95) per workload as a Markdown table,
then how many are worse and the geometric mean of each ratio. docs/simulator.md
(Finding 9) shows its output; the policy of that finding was tuned on these.

    scripts/fetch-traces.sh
    cargo build --release -p cuttle-sim
    python3 scripts/trace-variants.py $CARGO_TARGET_DIR/release/cuttle-sim [cuttle-sim flags...]

The variants are made from each trace's workload file (`--write-workload`), so they keep
its lab size, runtimes, limits and descriptions:
  -s90, -s80, -s50, -s35  submit times scaled by 0.9 ... 0.35: the same work offered
                          faster, so the queue grows (the load rises by 1/scale);
  -h1, -h2                the first and the second half of the jobs, each from time 0
                          (-h2 with a different urgent set: every 10th job from the 4th);
  -u5                     every 10th job from the 6th urgent, not from the 1st.
The generated weeks (seeds 2, 3) and the standard week are run as they are. Workloads
whose runs are waits of days to weeks (the Lublin model, NASA scaled to 50 % and 35 %)
are marked "overload" and summarized apart. Other arguments go to every run, for tuning.
Two runs at a time; about 15 s for a release build.

    python3 scripts/trace-variants.py SIM --jitter K [cuttle-sim flags...]

also replays K copies of each workload whose submit times are moved by up to 30 s (a
real scheduler's cycle: Slurm's default bf_interval) either way, each copy with its own
seed, and prints per metric the ratio as logged, the lowest and highest ratio over
the copies and in how many cuttle is worse: whether a difference is the policy's or the
replay's noise (docs/simulator.md, Finding 13). About 4 minutes with K = 8.
"""
import concurrent.futures
import json
import math
import os
import subprocess
import sys
import tempfile

from simwork import METRICS, jittered, print_jitter, ratio, read, take_jitter, write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = os.path.join(ROOT, "workloads", "traces")

# (base workload, name, submit scale, urgent offset or None, (half, of) or None, overload)
VARIANTS = [
    ("KTH-SP2-1996-2.1-cln.swf", "kth", 1.0, None, None, False),
    ("KTH-SP2-1996-2.1-cln.swf", "kth-s90", 0.9, None, None, False),
    ("KTH-SP2-1996-2.1-cln.swf", "kth-s80", 0.8, None, None, False),
    ("KTH-SP2-1996-2.1-cln.swf", "kth-u5", 1.0, 5, None, False),
    ("KTH-SP2-1996-2.1-cln.swf", "kth-h1", 1.0, None, (0, 2), False),
    ("KTH-SP2-1996-2.1-cln.swf", "kth-h2", 1.0, 3, (1, 2), False),
    ("HPC2N-2002-alea-3171.swf", "hpc2n", 1.0, None, None, False),
    ("HPC2N-2002-alea-3171.swf", "hpc2n-s90", 0.9, None, None, False),
    ("HPC2N-2002-alea-3171.swf", "hpc2n-s80", 0.8, None, None, False),
    ("HPC2N-2002-alea-3171.swf", "hpc2n-u5", 1.0, 5, None, False),
    ("HPC2N-2002-alea-3171.swf", "hpc2n-h1", 1.0, None, (0, 2), False),
    ("HPC2N-2002-alea-3171.swf", "hpc2n-h2", 1.0, 3, (1, 2), False),
    ("lublin_256.swf", "lublin", 1.0, None, None, True),
    ("NASA-iPSC-1993-3.1-cln.swf", "nasa-s50", 0.5, None, None, True),
    ("NASA-iPSC-1993-3.1-cln.swf", "nasa-s35", 0.35, None, None, True),
    ("sepia-week.csv", "standard week", 1.0, None, None, False),
    ("seed 2", "seed 2", 1.0, None, None, False),
    ("seed 3", "seed 3", 1.0, None, None, False),
]


def workload_file(sim, base, out):
    """Writes `base` (a fetched trace, the standard week or a seed) as a workload file."""
    if base.startswith("seed "):
        args = ["--generate", "--seed", base.split()[1]]
    elif base.endswith(".csv"):
        args = ["--workload", os.path.join(ROOT, "workloads", base)]
    else:
        path = os.path.join(TRACES, base)
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run scripts/fetch-traces.sh first")
        args = ["--workload", path]
    subprocess.run([sim] + args + ["--write-workload", out], check=True, capture_output=True)


def variant(source, out, scale, urgent, part):
    head, rows = read(source)
    if part is not None:
        k, n = part
        rows = rows[k * len(rows) // n:(k + 1) * len(rows) // n]
        first = int(rows[0][0])
        rows = [[str(int(r[0]) - first)] + r[1:] for r in rows]
    rows = [[str(int(int(r[0]) * scale))] + r[1:] for r in rows]
    if urgent is not None:
        rows = [[r[0], "50" if i % 10 == urgent else "1000"] + r[2:] for i, r in enumerate(rows)]
    write(out, head, rows)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sim, extra = sys.argv[1], sys.argv[2:]
    copies = take_jitter(extra)
    with tempfile.TemporaryDirectory() as tmp:
        bases = {}
        files = []
        for base, name, scale, urgent, part, overload in VARIANTS:
            if base not in bases:
                bases[base] = os.path.join(tmp, f"base-{len(bases)}.csv")
                workload_file(sim, base, bases[base])
            out = os.path.join(tmp, f"{name}.csv")
            variant(bases[base], out, scale, urgent, part)
            files.append((name, out, overload, 0))
            for seed in range(1, copies + 1):
                copy = os.path.join(tmp, f"{name}.jitter{seed}.csv")
                jittered(out, copy, seed)
                files.append((name, copy, overload, seed))

        def run(item):
            name, path, overload, seed = item
            out = subprocess.run([sim, "--workload", path, "--json"] + extra,
                                 capture_output=True, text=True, check=True)
            rows = {r["strategy"]: r for r in json.loads(out.stdout)}
            return name, overload, seed, rows["cuttle"], rows["easy"]

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(run, files))
    results = [(name, overload, cuttle, easy)
               for name, overload, seed, cuttle, easy in runs if seed == 0]
    if copies:
        print_jitter(runs, copies)
        return

    print("| workload | mean | p95 | max | urgent p95 | cuttle's mean / p95 / max wait (h) |")
    print("|---|---|---|---|---|---|")
    logs = {False: {m: [] for m in METRICS}, True: {m: [] for m in METRICS}}
    worse = {False: {m: 0 for m in METRICS}, True: {m: 0 for m in METRICS}}
    for name, overload, cuttle, easy in results:
        cells = []
        for m in METRICS:
            r = ratio(cuttle, easy, m)
            if r is None:
                cells.append("– (under a minute)")
                continue
            logs[overload][m].append(math.log(max(r, 1e-6)))
            bad = (cuttle[m] or 0.0) > (easy[m] or 0.0) + 1
            worse[overload][m] += bad
            cells.append(f"**{r:.3f}**" if bad else f"{r:.3f}")
        label = f"{name} (overload)" if overload else name
        hours = " / ".join(f"{cuttle[m] / 3600:.1f}" for m in METRICS[:3])
        print(f"| {label} | " + " | ".join(cells) + f" | {hours} |")
    print()
    for overload, label in [(False, "traces, variants and weeks"), (True, "overload")]:
        parts = []
        for m in METRICS:
            values = logs[overload][m]
            if values:
                geo = math.exp(sum(values) / len(values))
                top = math.exp(max(values))
                parts.append(f"{m.replace('_wait_s', '')}: worse on {worse[overload][m]} of "
                             f"{len(values)}, geometric mean {geo:.3f}, highest {top:.3f}")
        print(f"{label}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
