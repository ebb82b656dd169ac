#!/usr/bin/env python3
"""Waits until the machine is quiet: machine-wide busy CPU below BUSY cores (default 0.15) over
each of 3 consecutive 2 s windows, for at most MAX_WAIT s (default 1800). Prints what it saw.

Usage: python3 bench/wait_quiet.py [BUSY] [MAX_WAIT]      (Linux /proc/stat; standard library)
"""
import os
import sys
import time

busy_max = float(sys.argv[1]) if len(sys.argv) > 1 else 0.15
max_wait = float(sys.argv[2]) if len(sys.argv) > 2 else 1800.0
hz = os.sysconf("SC_CLK_TCK")


def busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / hz


t0 = time.time()
quiet = 0
b = float("nan")
while quiet < 3 and time.time() - t0 < max_wait:
    a = busy()
    time.sleep(2.0)
    b = (busy() - a) / 2.0
    quiet = quiet + 1 if b < busy_max else 0
state = "quiet" if quiet >= 3 else "STILL BUSY"
print(f"{state} after {time.time() - t0:.0f} s of waiting (last 2 s window: {b:.2f} cores busy)", file=sys.stderr)
