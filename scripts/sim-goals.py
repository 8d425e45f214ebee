#!/usr/bin/env python3
"""Runs cuttle-sim on the standard week and 15 generated workloads and checks the five
goals of docs/simulator.md on each, printing the Markdown table that page shows, then
cuttle against plain EASY backfill on mean, p95, max and urgent p95 wait.

    cargo build --release -p cuttle-sim
    python3 scripts/sim-goals.py $CARGO_TARGET_DIR/release/cuttle-sim [--unseen] [cuttle-sim flags...]

--unseen runs 32 other workloads instead (seeds 5-12, each as 200 nodes for 7 days, 50 for
7, 100 for 5 and 30 for 2), which the policy was not tuned on. --jitter K also replays K
copies of each workload with submit times moved by up to 30 s and prints, per metric, in
how many copies cuttle is worse than EASY (as scripts/trace-variants.py does; Finding 13).
Other arguments (e.g. --aging-step 5) are passed to every run, for tuning. Two runs at a
time (the machines here have 2 cores); about half a minute (a minute with --unseen, and
K + 1 times that with --jitter K) for a release build.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile

from simwork import jittered, print_jitter, take_jitter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [(200, 7), (50, 7), (200, 3), (50, 3)]


def unseen():
    for seed in range(5, 13):
        for nodes, days in [(200, 7), (50, 7), (100, 5), (30, 2)]:
            yield f"seed {seed}, {nodes} nodes, {days} days", [
                "--generate", "--seed", str(seed), "--nodes", str(nodes), "--days", str(days)]


def workloads():
    for seed in (1, 2, 3, 4):
        for nodes, days in SHAPES:
            name = f"seed {seed}"
            if nodes != 200:
                name += f", {nodes} nodes"
            if days != 7:
                name += f", {days} days"
            if (seed, nodes, days) == (1, 200, 7):
                yield "seed 1 (standard)", ["--workload", os.path.join(ROOT, "workloads/sepia-week.csv")]
            else:
                yield name, ["--generate", "--seed", str(seed), "--nodes", str(nodes), "--days", str(days)]


def run(binary, extra, args):
    out = subprocess.run([binary, *args, "--json", *extra], capture_output=True, text=True, check=True)
    return {row["strategy"]: row for row in json.loads(out.stdout)}


def hours(seconds):
    return f"{seconds / 3600:.1f}"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary, extra = sys.argv[1], sys.argv[2:]
    jobs = list(workloads())
    copies = take_jitter(extra)
    if "--unseen" in extra:
        extra.remove("--unseen")
        jobs = list(unseen())
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda job: run(binary, extra, job[1]), jobs))
    held = [0] * 5
    with_urgent = 0
    print("| workload | util cuttle / hol / greedy | idle cuttle / hol | 5-node max cuttle / legacy "
          "| max wait / bound | urgent p95 cuttle / hol | goals 1 2 3 4 5 |")
    print("|---|---|---|---|---|---|---|")
    for (name, _), rows in zip(jobs, results):
        cuttle, hol, legacy = rows["cuttle"], rows["head-of-line"], rows["legacy-workers"]
        biggest = max(cuttle["wait_s"]["by_nodes"], key=int)
        big_c = cuttle["wait_s"]["by_nodes"][biggest]["max"]
        big_l = legacy["wait_s"]["by_nodes"][biggest]["max"]
        urgent_c = cuttle["wait_s"]["by_priority"].get("urgent")
        urgent_h = hol["wait_s"]["by_priority"].get("urgent")
        goals = [
            cuttle["utilization"] > hol["utilization"],
            big_c < big_l,
            cuttle["max_wait_s"] <= cuttle["wait_bound_s"],
            cuttle["utilization"] >= 0.95 * cuttle["greedy_utilization"],
            None if urgent_c is None else urgent_c["p95"] <= urgent_h["p95"],
        ]
        for i, goal in enumerate(goals):
            held[i] += bool(goal)
        with_urgent += goals[4] is not None
        urgent = "no urgent jobs" if urgent_c is None else f"{hours(urgent_c['p95'])} / {hours(urgent_h['p95'])}"
        marks = " ".join("–" if g is None else "Y" if g else "N" for g in goals)
        print(f"| {name} | {cuttle['utilization']:.4f} / {hol['utilization']:.4f} / "
              f"{cuttle['greedy_utilization']:.4f} | "
              f"{cuttle['idle_while_queued_node_s'] / 3600:.0f} / {hol['idle_while_queued_node_s'] / 3600:.0f} | "
              f"{hours(big_c)} / {hours(big_l)} | {cuttle['max_wait_s'] / 3600:.0f} / {cuttle['wait_bound_s'] / 3600:.0f} | "
              f"{urgent} | {marks} |")
    print()
    print(f"held: goal 1: {held[0]} of {len(jobs)}, goal 2: {held[1]} of {len(jobs)}, "
          f"goal 3: {held[2]} of {len(jobs)}, goal 4: {held[3]} of {len(jobs)}, "
          f"goal 5: {held[4]} of {with_urgent}")
    print()
    print_against_easy(jobs, results)
    if copies:
        print()
        print_against_easy_jittered(binary, extra, jobs, results, copies)


def print_against_easy(jobs, results):
    """cuttle against plain EASY backfill on the issue's four waits, hours."""
    keys = ["mean_wait_s", "p95_wait_s", "max_wait_s", "urgent_p95_wait_s"]
    wins = [0] * len(keys)
    counted = [0] * len(keys)
    print("| workload | mean cuttle / easy | p95 cuttle / easy | max cuttle / easy "
          "| urgent p95 cuttle / easy |")
    print("|---|---|---|---|---|")
    for (name, _), rows in zip(jobs, results):
        cells = []
        for i, key in enumerate(keys):
            mine, theirs = rows["cuttle"][key], rows["easy"][key]
            if mine is None or theirs is None:
                cells.append("–")
                continue
            counted[i] += 1
            wins[i] += mine <= theirs
            mark = "" if mine <= theirs else " **worse**"
            cells.append(f"{hours(mine)} / {hours(theirs)}{mark}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    print("cuttle no worse than easy: " + ", ".join(
        f"{key.removesuffix('_wait_s').replace('_', ' ')} {wins[i]} of {counted[i]}"
        for i, key in enumerate(keys)))


def print_against_easy_jittered(binary, extra, jobs, results, copies):
    """cuttle against EASY on each workload as generated and on `copies` copies of it with
    jittered submit times."""
    runs = [(name, False, 0, rows["cuttle"], rows["easy"]) for (name, _), rows in zip(jobs, results)]
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (name, args) in enumerate(jobs):
            source = os.path.join(tmp, f"{i}.csv")
            subprocess.run([binary, *args, "--write-workload", source], check=True, capture_output=True)
            for seed in range(1, copies + 1):
                copy = os.path.join(tmp, f"{i}.jitter{seed}.csv")
                jittered(source, copy, seed)
                files.append((name, seed, copy))
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            copied = list(pool.map(lambda f: run(binary, extra, ["--workload", f[2]]), files))
    runs += [(name, False, seed, rows["cuttle"], rows["easy"])
             for (name, seed, _), rows in zip(files, copied)]
    print_jitter(runs, copies, label="generated weeks")


if __name__ == "__main__":
    main()
