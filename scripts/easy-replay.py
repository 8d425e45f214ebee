#!/usr/bin/env python3
"""An independent replay of textbook EASY backfill on an SWF trace, to cross-check
cuttle-sim's `easy` row: written apart from cuttle-sim (no code shared, only the model
docs/simulator.md states), so a bug in the simulator's engine, its SWF reader or its
metrics shows up as a disagreement.

The model (docs/simulator.md, "SWF traces"):
- one processor is one node; the lab has the header's MaxProcs (else MaxNodes) nodes;
- a job runs its run time (field 4), cut at its limit: the requested time (field 9),
  else the run time rounded up to the next whole hour (at least one hour);
- jobs with an unknown run time or no processors are skipped; a job wider than the lab
  never runs (counted as buried);
- priority 50 (urgent) if the job number is a multiple of 10, else 1000;
- EASY: queue in (priority, submit order); start from the front while jobs fit; the
  first that does not fit gets the shadow time (the earliest instant the jobs holding
  nodes, by start + limit, leave it enough) and the nodes spare then; a later job starts
  now if it fits and its limit ends by the shadow time, or it takes only spare nodes.
- At one instant, jobs that end are removed first, then jobs submitted are queued, then
  EASY decides once.

Prints mean, p50, p95, p99 and max wait and the urgent p95, in seconds, with
nearest-rank percentiles (the smallest wait with at least p % of waits at or below it).

    python3 scripts/easy-replay.py workloads/traces/KTH-SP2-1996-2.1-cln.swf [--json]

With `--check STARTS.csv` (what `cuttle-sim --workload TRACE --starts STARTS.csv`
writes) it also compares every job's wait with the `easy_wait_s` column, job by job, and
exits 1 naming the first jobs that disagree: the summary figures can agree by chance,
each job's wait cannot.

    cuttle-sim --workload T.swf --starts /tmp/starts.csv
    python3 scripts/easy-replay.py T.swf --check /tmp/starts.csv
"""

import csv
import heapq
import json
import math
import sys

HOUR = 3600


def read_trace(path):
    """(lab size, jobs): each job a dict, in submit order (file order for ties)."""
    lab = {"MaxProcs": None, "MaxNodes": None}
    jobs = []
    with open(path, encoding="utf-8", errors="replace") as trace:
        for line in trace:
            text = line.strip()
            if not text:
                continue
            if text.startswith(";"):
                key, _, value = text[1:].partition(":")
                if key.strip() in lab:
                    try:
                        number = int(value.strip())
                    except ValueError:
                        number = None
                    lab[key.strip()] = number if number and number > 0 else None
                continue
            fields = [round(float(f)) for f in text.split()]
            number, submit, _, run, allocated = fields[0:5]
            requested_procs, requested_time = fields[7], fields[8]
            if run < 0:
                continue
            procs = allocated if allocated > 0 else requested_procs
            if procs <= 0:
                continue
            limit = requested_time if requested_time > 0 else (run // HOUR + 1) * HOUR
            jobs.append({
                "number": number,
                "submit": submit,
                "run": min(run, limit),
                "limit": limit,
                "nodes": procs,
                "priority": 50 if number % 10 == 0 else 1000,
            })
    jobs = sorted(enumerate(jobs), key=lambda pair: (pair[1]["submit"], pair[0]))
    jobs = [job for _, job in jobs]
    return lab["MaxProcs"] or lab["MaxNodes"], jobs


def shadow(needed, free, holding):
    """The earliest instant `needed` nodes are free, and how many spare then; holding is
    a list of (ends by, nodes)."""
    freed_by = {}
    for ends_by, nodes in holding:
        freed_by[ends_by] = freed_by.get(ends_by, 0) + nodes
    available = free
    # All jobs ending at one instant give their nodes back together.
    for ends_by in sorted(freed_by):
        available += freed_by[ends_by]
        if available >= needed:
            return ends_by, available - needed
    return None, 0


def replay(nodes, jobs):
    """Runs EASY; returns {job index: wait} and how many jobs never ran."""
    free = nodes
    queue = []  # sorted list of (priority, index)
    holding = {}  # index -> (start + limit, nodes)
    ends = []  # heap of (actual end, index)
    waits = {}
    buried = 0
    next_job = 0
    while next_job < len(jobs) or ends:
        now = min(
            jobs[next_job]["submit"] if next_job < len(jobs) else math.inf,
            ends[0][0] if ends else math.inf,
        )
        while ends and ends[0][0] == now:
            _, index = heapq.heappop(ends)
            free += holding.pop(index)[1]
        while next_job < len(jobs) and jobs[next_job]["submit"] == now:
            if jobs[next_job]["nodes"] > nodes:
                buried += 1
            else:
                queue.append((jobs[next_job]["priority"], next_job))
            next_job += 1
        queue.sort()
        started = []
        head = None
        spare = 0
        shadow_at = None
        for _, index in queue:
            job = jobs[index]
            if head is None:
                if job["nodes"] <= free:
                    started.append(index)
                else:
                    head = index
                    shadow_at, spare = shadow(job["nodes"], free, list(holding.values()))
                    if shadow_at is None:
                        break
                    continue
            elif free == 0:
                break
            elif job["nodes"] > free:
                continue
            elif now + job["limit"] <= shadow_at:
                started.append(index)
            elif job["nodes"] <= spare:
                spare -= job["nodes"]
                started.append(index)
            else:
                continue
            free -= job["nodes"]
            holding[index] = (now + job["limit"], job["nodes"])
            heapq.heappush(ends, (now + job["run"], index))
            waits[index] = now - job["submit"]
        gone = set(started)
        queue = [entry for entry in queue if entry[1] not in gone]
    return waits, buried + len(queue)


def nearest_rank(values, percent):
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def check(path, jobs, waits):
    """Compares `waits` with the `easy_wait_s` column of cuttle-sim's --starts CSV at
    `path`; returns the disagreements as (job, submit, ours, theirs)."""
    with open(path, newline="", encoding="utf-8") as starts:
        rows = list(csv.DictReader(starts))
    if len(rows) != len(jobs):
        sys.exit(f"{path}: {len(rows)} jobs, but the trace has {len(jobs)}: "
                 "was it written for this trace?")
    differ = []
    for index, row in enumerate(rows):
        if int(row["job"]) != index or float(row["submit_s"]) != jobs[index]["submit"]:
            sys.exit(f"{path}: job {row['job']} is submitted at {row['submit_s']} s, "
                     f"the trace's job {index} at {jobs[index]['submit']} s: "
                     "was it written for this trace?")
        theirs = float(row["easy_wait_s"]) if row["easy_wait_s"] else None
        ours = waits.get(index)
        if ours != theirs:
            differ.append((index, jobs[index]["submit"], ours, theirs))
    return differ


def main():
    args = sys.argv[1:]
    starts = None
    if "--check" in args:
        at = args.index("--check")
        if at + 1 >= len(args):
            sys.exit("--check needs the CSV cuttle-sim's --starts wrote")
        starts = args[at + 1]
        del args[at:at + 2]
    args = [a for a in args if a != "--json"]
    if len(args) != 1:
        sys.exit(__doc__)
    nodes, jobs = read_trace(args[0])
    waits, never = replay(nodes, jobs)
    all_waits = list(waits.values())
    urgent = [w for i, w in waits.items() if jobs[i]["priority"] < 100]
    row = {
        "trace": args[0],
        "nodes": nodes,
        "jobs": len(jobs),
        "started": len(all_waits),
        "never_started": never,
        "mean_wait_s": sum(all_waits) / len(all_waits),
        "p50_wait_s": nearest_rank(all_waits, 50),
        "p95_wait_s": nearest_rank(all_waits, 95),
        "p99_wait_s": nearest_rank(all_waits, 99),
        "max_wait_s": max(all_waits),
        "urgent_p95_wait_s": nearest_rank(urgent, 95),
    }
    if "--json" in sys.argv:
        print(json.dumps(row))
    else:
        for key, value in row.items():
            print(f"{key:20} {value}")
    if starts is not None:
        differ = check(starts, jobs, waits)
        print(f"job by job against {starts}: {len(jobs) - len(differ)} of {len(jobs)} "
              "waits agree", file=sys.stderr)
        for index, submit, ours, theirs in differ[:10]:
            print(f"  job {index} (submitted {submit} s): wait {ours} here, {theirs} in "
                  "cuttle-sim", file=sys.stderr)
        if differ:
            sys.exit(1)


if __name__ == "__main__":
    main()
