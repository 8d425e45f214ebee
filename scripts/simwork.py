"""Workload files for the scripts that replay many of them (trace-variants.py,
sim-goals.py): reading and writing cuttle-sim's workload format, copies with jittered
submit times, and the table of cuttle's wait over EASY's across such copies
(docs/simulator.md, Finding 13)."""
import math
import random
import sys

METRICS = ["mean_wait_s", "p95_wait_s", "max_wait_s", "urgent_p95_wait_s"]

# How far a jittered copy moves each submit time, either way: less than one cycle of a
# real scheduler (Slurm's default bf_interval is 30 s).
JITTER_S = 30.0


def take_jitter(args):
    """Removes `--jitter K` from `args` and returns K (0 without it)."""
    if "--jitter" not in args:
        return 0
    at = args.index("--jitter")
    try:
        copies = int(args[at + 1])
    except (IndexError, ValueError):
        sys.exit("--jitter needs a whole number of copies, e.g. --jitter 8")
    del args[at:at + 2]
    return copies


def read(source):
    """A workload file's header lines (comments, the column line) and its job rows."""
    head, rows = [], []
    with open(source) as f:
        for line in f:
            if line.startswith("#") or line.startswith("submit_s"):
                head.append(line)
            else:
                # submit_s,priority,nodes,runtime_s,time_limit_s,description (with commas)
                rows.append(line.rstrip("\n").split(",", 5))
    return head, rows


def write(out, head, rows):
    with open(out, "w") as f:
        f.writelines(head)
        for r in rows:
            f.write(",".join(r) + "\n")


def jittered(source, out, seed):
    """Writes `source` with every submit time moved by a uniform draw from
    [-JITTER_S, JITTER_S] (never before 0), the draws seeded by `seed`."""
    rng = random.Random(seed)
    head, rows = read(source)
    rows = [[f"{max(0.0, float(r[0]) + rng.uniform(-JITTER_S, JITTER_S)):.3f}"] + r[1:]
            for r in rows]
    write(out, head, rows)


def ratio(cuttle, easy, m):
    """cuttle's wait over EASY's on metric `m`, or None when both are under a minute."""
    ours, theirs = cuttle[m] or 0.0, easy[m] or 0.0
    if ours < 60 and theirs < 60:
        return None
    return ours / max(theirs, 1.0)


def print_jitter(runs, copies, label="traces, variants and weeks"):
    """Per workload and metric: the ratio as logged, the range over the jittered copies
    and in how many copies cuttle is worse; then, per metric, on how many workloads cuttle
    is worse as logged and in most copies, and the geometric mean of the median ratio."""
    names = []
    by_name = {}
    for name, overload, seed, cuttle, easy in runs:
        if name not in by_name:
            names.append(name)
            by_name[name] = (overload, {}, [])
        _, logged, copied = by_name[name]
        if seed == 0:
            logged.update({m: ratio(cuttle, easy, m) for m in METRICS})
        else:
            copied.append({m: ratio(cuttle, easy, m) for m in METRICS})
    print(f"cuttle's wait over EASY's as logged (lowest–highest over {copies} copies with submit "
          f"times moved up to {JITTER_S:.0f} s, in how many of them cuttle is worse; –: no "
          f"such jobs, or both under a minute; bold: worse in most copies)")
    print()
    print("| workload | mean | p95 | max | urgent p95 |")
    print("|---|---|---|---|---|")
    tally = {o: {m: {"logged": 0, "most": 0, "n": 0, "logs": []} for m in METRICS}
             for o in (False, True)}
    for name in names:
        overload, logged, copied = by_name[name]
        cells = []
        for m in METRICS:
            values = [c[m] for c in copied if c[m] is not None]
            if logged[m] is None or not values:
                cells.append("–")
                continue
            worse = sum(v > 1.0 for v in values)
            t = tally[overload][m]
            t["n"] += 1
            t["logged"] += logged[m] > 1.0
            t["most"] += 2 * worse > len(values)
            median = sorted(values)[len(values) // 2]
            t["logs"].append(math.log(max(median, 1e-6)))
            text = f"{logged[m]:.3f} ({min(values):.2f}–{max(values):.2f}, {worse}/{len(values)})"
            cells.append(f"**{text}**" if 2 * worse > len(values) else text)
        shown = f"{name} (overload)" if overload else name
        print(f"| {shown} | " + " | ".join(cells) + " |")
    print()
    for overload, label in [(False, label), (True, "overload")]:
        parts = []
        for m in METRICS:
            t = tally[overload][m]
            if t["n"]:
                geo = math.exp(sum(t["logs"]) / len(t["logs"]))
                parts.append(f"{m.replace('_wait_s', '')}: worse as logged on {t['logged']} of "
                             f"{t['n']}, in most copies on {t['most']}, geometric mean of the "
                             f"median {geo:.3f}")
        if parts:
            print(f"{label}: " + "; ".join(parts))
