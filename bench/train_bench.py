#!/usr/bin/env python3
"""Side-by-side training benchmark harness: sgdlab vs PyTorch eager (bench/README.md).

Standard library only (runs with any python3 >= 3.8; PyTorch itself runs in the interpreter given
by --python). For every (job, tool, threads) case it runs the whole process --rounds times,
interleaved (round r runs every case once, in a rotated order, so slow drifts in machine load hit
all cases alike), after --warmup unrecorded runs of each case. Per run it records:

  whole_s    wall time of the whole process (fork/exec to exit), as a user experiences it
  loop_s     the training loop measured inside the program: sgdlab's record.json wall_time_s,
             PyTorch's loop_s (both include the evaluations at step 0 and at the end)
  cpu_s      user + sys CPU time of the process
  foreign    CPU time used by everything else on the machine during the run, as a fraction of
             one core (from /proc/stat minus the child's own CPU time): the contamination signal
  steal      hypervisor steal time during the run, fraction of one core

Before every run it waits (up to --max-wait s) until the machine is quiet: machine-wide CPU busy
below --quiet-busy of one core over a 1 s window; a run during which other processes used more
than --contaminated of a core is run again (up to --retries times; the discarded attempts are
listed). Load averages (/proc/loadavg) are recorded before and after the block. Writes raw runs as
JSON and the summary tables as Markdown.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def cpu_times():
    """(busy, steal) machine-wide, in seconds (summed over CPUs)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / HZ, steal / HZ


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def busy_over(seconds):
    """Machine-wide busy CPU over the next `seconds`, in cores."""
    b0, _ = cpu_times()
    time.sleep(seconds)
    b1, _ = cpu_times()
    return (b1 - b0) / seconds  # in cores


def wait_quiet(threshold, max_wait, log):
    t0 = time.time()
    while True:
        b = busy_over(1.0)
        if b < threshold:
            return b, time.time() - t0
        if time.time() - t0 > max_wait:
            log(f"  machine still busy ({b:.2f} cores) after {max_wait:.0f} s; measuring anyway")
            return b, time.time() - t0
        time.sleep(3.0)


def run_once(argv, parse_loop):
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b0, s0 = cpu_times()
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    whole = time.perf_counter() - t0
    b1, s1 = cpu_times()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(argv)}\n{p.stderr}")
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    foreign = max(0.0, (b1 - b0) - cpu) / whole
    rec = json.loads(p.stdout.strip().splitlines()[-1])
    return dict(whole_s=whole, loop_s=parse_loop(rec), cpu_s=cpu, foreign=foreign, steal=(s1 - s0) / whole, record=rec)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sgdlab", required=True, help="the sgdlab binary")
    ap.add_argument("--python", required=True, help="a Python with torch and numpy")
    ap.add_argument("--jobs", default="S,L")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--tools", default="sgdlab,pytorch")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quiet-busy", type=float, default=0.15, help="cores busy below which the machine is quiet")
    ap.add_argument("--max-wait", type=float, default=900.0)
    ap.add_argument("--contaminated", type=float, default=0.25, help="foreign load (cores) above which a run is flagged")
    ap.add_argument("--retries", type=int, default=3, help="times a flagged run is run again (the last attempt is kept)")
    ap.add_argument("--note", default="", help="a line printed at the top of the Markdown (versions)")
    ap.add_argument("--json-out", required=True)
    ap.add_argument("--md-out", required=True)
    args = ap.parse_args()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    tmp = tempfile.mkdtemp(prefix="sgdlab-train-bench-")
    cases = []
    for job in args.jobs.split(","):
        for tool in args.tools.split(","):
            for th in [int(t) for t in args.threads.split(",")]:
                if tool == "sgdlab":
                    spec = os.path.join(here, "jobs", f"job_{job.lower()}.toml")
                    out = os.path.join(tmp, f"{job}{th}")
                    argv = [args.sgdlab, "--threads", str(th), "train", spec, "--out", out, "--fresh", "--quiet", "--json"]
                    parse = lambda r: r["wall_time_s"]  # noqa: E731
                else:
                    argv = [args.python, os.path.join(here, "anchors", "torch_train.py"), "--job", job, "--threads", str(th)]
                    parse = lambda r: r["loop_s"]  # noqa: E731
                cases.append(dict(job=job, tool=tool, threads=th, argv=argv, parse=parse, runs=[]))

    meta = dict(
        started=time.strftime("%Y-%m-%d %H:%M:%S"),
        loadavg_before=loadavg(),
        uname=" ".join(os.uname()),
        cpus=NCPU,
        rounds=args.rounds,
        warmup=args.warmup,
        note=args.note,
    )
    log(f"load average before: {meta['loadavg_before']}")
    log(f"warm-up ({args.warmup} run(s) of each case)")
    for _ in range(args.warmup):
        for c in cases:
            run_once(c["argv"], c["parse"])
    quiet = []
    discarded = []
    for r in range(args.rounds):
        order = cases[r % len(cases) :] + cases[: r % len(cases)]
        if r % 2:
            order = order[::-1]
        line = []
        for c in order:
            for attempt in range(args.retries + 1):
                b, waited = wait_quiet(args.quiet_busy, args.max_wait, log)
                quiet.append(dict(round=r, case=f"{c['job']}/{c['tool']}/{c['threads']}", busy_cores=b, waited_s=waited))
                res = run_once(c["argv"], c["parse"])
                res.update(round=r, attempt=attempt, quiet_busy=b)
                if res["foreign"] <= args.contaminated or attempt == args.retries:
                    break
                discarded.append(dict(res, job=c["job"], tool=c["tool"], threads=c["threads"]))
                log(f"  {c['job']}/{c['tool']}/{c['threads']}: foreign load {res['foreign']:.2f} cores, run again")
            c["runs"].append(res)
            line.append(f"{c['job']}/{c['tool'][:2]}/{c['threads']}={res['whole_s']:.2f}")
        log(f"round {r + 1}/{args.rounds} [{loadavg()}]: " + " ".join(line))
    meta["loadavg_after"] = loadavg()
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    log(f"load average after: {meta['loadavg_after']}")

    # ---- summary -------------------------------------------------------------------------
    for c in cases:
        runs = c["runs"]
        c["median_whole_s"] = statistics.median(x["whole_s"] for x in runs)
        c["min_whole_s"] = min(x["whole_s"] for x in runs)
        c["max_whole_s"] = max(x["whole_s"] for x in runs)
        c["median_loop_s"] = statistics.median(x["loop_s"] for x in runs)
        c["median_cpu_s"] = statistics.median(x["cpu_s"] for x in runs)
        c["flagged"] = sum(x["foreign"] > args.contaminated for x in runs)
        c["max_foreign"] = max(x["foreign"] for x in runs)
        clean = [x for x in runs if x["foreign"] <= args.contaminated]
        c["median_whole_clean_s"] = statistics.median(x["whole_s"] for x in clean) if clean else float("nan")
        c["median_loop_clean_s"] = statistics.median(x["loop_s"] for x in clean) if clean else float("nan")
    jobs = sorted({c["job"] for c in cases}, key=args.jobs.split(",").index)
    lines = ([args.note, ""] if args.note else []) + [
        f"Measured {meta['started']} to {meta['finished']}; {args.rounds} interleaved rounds after "
        f"{args.warmup} warm-up run(s) per case; load average (1/5/15 min) before "
        f"`{meta['loadavg_before']}`, after `{meta['loadavg_after']}`.",
        "",
        "Speed-up = PyTorch's best median (over its thread counts) / this row's median, for the",
        "whole process and for the in-loop time separately (> 1: faster than PyTorch's best).",
        "",
        "| job | tool | threads | median whole process (s) | min-max (s) | median in-loop (s) | "
        "speed-up whole | speed-up in-loop | median CPU (s) | runs flagged busy |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for job in jobs:
        jc = [c for c in cases if c["job"] == job]
        torch_cases = [c for c in jc if c["tool"] == "pytorch"]
        best_whole = min((c["median_whole_s"] for c in torch_cases), default=float("nan"))
        best_loop = min((c["median_loop_s"] for c in torch_cases), default=float("nan"))
        for c in jc:
            lines.append(
                f"| {job} | {c['tool']} | {c['threads']} | {c['median_whole_s']:.3f} | "
                f"{c['min_whole_s']:.3f}-{c['max_whole_s']:.3f} | {c['median_loop_s']:.3f} | "
                f"{best_whole / c['median_whole_s']:.2f}x | {best_loop / c['median_loop_s']:.2f}x | "
                f"{c['median_cpu_s']:.2f} | {c['flagged']}/{len(c['runs'])} |"
            )
    lines += [
        "",
        f"A run is flagged busy when other processes used more than {args.contaminated} of a core on "
        "average during it (machine-wide busy CPU time from /proc/stat minus the run's own CPU time).",
        "Medians over unflagged runs only:",
        "",
        "| job | tool | threads | median whole (clean) (s) | median in-loop (clean) (s) | max foreign load (cores) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for c in cases:
        lines.append(
            f"| {c['job']} | {c['tool']} | {c['threads']} | {c['median_whole_clean_s']:.3f} | "
            f"{c['median_loop_clean_s']:.3f} | {c['max_foreign']:.2f} |"
        )
    tb = [c for c in cases if c["tool"] == "pytorch"]
    if tb:
        lines += [
            "",
            "PyTorch's whole-process time broken down (medians, s; measured inside the script):",
            "",
            "| job | threads | interpreter start-up + rest | import torch | data | model + optimizer | loop |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for c in tb:
            m = lambda k: statistics.median(x["record"][k] for x in c["runs"])  # noqa: E731
            rest = c["median_whole_s"] - m("total_s")
            lines.append(
                f"| {c['job']} | {c['threads']} | {rest:.3f} | {m('import_s'):.3f} | {m('data_s'):.3f} | "
                f"{m('setup_s'):.3f} | {m('loop_s'):.3f} |"
            )
    lines += ["", "Final metrics (last run of each case; same law, not the same draws across tools):", ""]
    lines += ["| job | tool | threads | train loss | train acc | test loss | test acc |", "|---|---|---:|---:|---:|---:|---:|"]
    for c in cases:
        r = c["runs"][-1]["record"]
        fm = r.get("final_metrics", r)
        lines.append(
            f"| {c['job']} | {c['tool']} | {c['threads']} | {fm['train_loss']:.4f} | {fm['train_accuracy']:.3f} | "
            f"{fm['test_loss']:.4f} | {fm['test_accuracy']:.3f} |"
        )
    waits = [q["waited_s"] for q in quiet]
    lines += [
        "",
        f"Before every run the harness waited for a quiet machine (busy < {args.quiet_busy} cores over 1 s): "
        f"{len(quiet)} checks, median wait {statistics.median(waits):.1f} s, longest {max(waits):.0f} s. "
        f"Runs flagged busy and run again (at most {args.retries} times; these are not in the medians): "
        f"{len(discarded)}"
        + (" (" + ", ".join(f"{d['job']}/{d['tool']}/{d['threads']} {d['foreign']:.2f} cores" for d in discarded) + ")" if discarded else "")
        + ".",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.md_out)), exist_ok=True)
    with open(args.md_out, "w") as f:
        f.write("\n".join(lines) + "\n")
    # No machine paths in the results: the binary, the interpreter and scratch dirs by role,
    # repository files relative to the repository root.
    root = os.path.dirname(here)

    def display(a):
        if a == args.sgdlab:
            return "sgdlab"
        if a == args.python:
            return "PYTHON"
        if a.startswith(tmp):
            return "<scratch>"
        if a.startswith(root + os.sep):
            return os.path.relpath(a, root)
        return a

    for c in cases:
        del c["parse"]
        c["argv"] = [display(a) for a in c["argv"]]
    with open(args.json_out, "w") as f:
        json.dump(dict(meta=meta, quiet=quiet, discarded=discarded, cases=cases), f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
