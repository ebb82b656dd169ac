#!/usr/bin/env python3
"""Markdown tables of Criterion medians for the `passes` and `matmul` benches (bench/README.md).

Reads CRITERION_DIR/<group>/<bench>/new/estimates.json (the median's point estimate and its 95%
interval, in ns) as written by `cargo bench -p sgdlab-nn --bench passes` and
`cargo bench -p sgdlab-linalg --bench matmul`. Standard library only.

Usage: python3 bench/criterion_tables.py [CRITERION_DIR]   (default: target/criterion)
"""

import json
import os
import sys


def median(path):
    with open(path) as f:
        e = json.load(f)["median"]
    ci = e["confidence_interval"]
    return e["point_estimate"], ci["lower_bound"], ci["upper_bound"]


def fmt(ns):
    return f"{ns / 1e6:.3f} ms" if ns >= 1e6 else f"{ns / 1e3:.2f} us"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
    out = []
    # ---- passes: groups named like mlp_40-100-100-10_relu_b32_f32 ----
    groups = sorted(d for d in os.listdir(root) if d.startswith("mlp_"))
    if groups:
        out += [
            "| model / batch / dtype | gradient | exact HVP | GGN-vector product | HVP / gradient | GGN-vp / gradient |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for g in sorted(groups, key=lambda s: (len(s), s)):
            m = {}
            for b in ("gradient", "hvp", "ggn_vp"):
                p = os.path.join(root, g, b, "new", "estimates.json")
                if os.path.exists(p):
                    m[b] = median(p)
            if len(m) < 3:
                continue
            name = g.replace("mlp_", "mlp:").replace("_relu_", ":relu / ").replace("_f", " / f")
            out.append(
                f"| {name} | {fmt(m['gradient'][0])} | {fmt(m['hvp'][0])} | {fmt(m['ggn_vp'][0])} | "
                f"{m['hvp'][0] / m['gradient'][0]:.2f}x | {m['ggn_vp'][0] / m['gradient'][0]:.2f}x |"
            )
        out.append("")
    # ---- matmul: matmul_f32/t{1,2}/MxKxN ----
    mm = os.path.join(root, "matmul_f32")
    if os.path.isdir(mm):
        shapes = set()
        for t in ("t1", "t2"):
            d = os.path.join(mm, t)
            if os.path.isdir(d):
                shapes |= {s for s in os.listdir(d) if "x" in s}

        def key(s):
            m, k, n = map(int, s.split("x"))
            return m * k * n

        out += [
            "| m x k x n | multiply-adds / PARALLEL_MIN_FLOPS | t1 median | t2 median | t2 / t1 | GFLOP/s t1 | GFLOP/s t2 | t2 ran in parallel? |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for s in sorted(shapes, key=key):
            m, k, n = map(int, s.split("x"))
            t1 = median(os.path.join(mm, "t1", s, "new", "estimates.json"))[0]
            t2 = median(os.path.join(mm, "t2", s, "new", "estimates.json"))[0]
            macs = m * k * n
            par = "yes" if macs >= 128 * 256 * 256 else "no (below the threshold: sequential)"
            out.append(
                f"| {s} | {macs / (128 * 256 * 256):.3f} | {fmt(t1)} | {fmt(t2)} | {t2 / t1:.2f} | "
                f"{2 * macs / t1:.1f} | {2 * macs / t2:.1f} | {par} |"
            )
    print("\n".join(out))


if __name__ == "__main__":
    main()
