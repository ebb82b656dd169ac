#!/usr/bin/env python3
"""PyHessian side of the curvature benchmark (bench/run_curvature_bench.sh drives both sides).

MLP 784-512-512-10, or LeNet-5 with --net lenet5 (PyTorch default init, seed 0, float32) at
initialisation, cross-entropy (mean) on the first 1,000 MNIST test images (../shared/data,
pixels / 255). Writes the weights (NET.safetensors, PyTorch names), the text of print(model)
(NET.txt, for sgdlab's --arch-file) and the data (.npy, one flattened image per row) for sgdlab, then times PyHessian's top
eigenvalue (power iteration, its defaults maxIter=100, tol=1e-3) and its trace (Hutchinson,
defaults maxIter=100, tol=1e-3; and again with exactly 100 probes), counting Hessian-vector products by wrapping
pyhessian.hessian.hessian_vector_product. Prints one JSON object.

Usage: python bench/anchors/pyhessian_bench.py --out DIR [--net mlp|lenet5] [--threads N] [--repeats R]
Reference only: needs torch, pyhessian, safetensors, numpy (a virtual environment outside the repo).
"""
import argparse
import gzip
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import pyhessian
import pyhessian.hessian  # noqa: F401  (the package re-exports the class under the module's name)
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "mnist"))


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--net", choices=["mlp", "lenet5"], default="mlp")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    x = read_idx(os.path.join(DATA, "t10k-images-idx3-ubyte.gz"))[: a.samples].reshape(a.samples, 784).astype(np.float32) / 255.0
    y = read_idx(os.path.join(DATA, "t10k-labels-idx1-ubyte.gz"))[: a.samples].astype(np.int64)
    np.save(os.path.join(a.out, "x.npy"), x)
    np.save(os.path.join(a.out, "y.npy"), y)
    torch.manual_seed(0)
    nn = torch.nn
    if a.net == "mlp":
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
        inputs = torch.from_numpy(x)
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
        )
        inputs = torch.from_numpy(x).reshape(a.samples, 1, 28, 28)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(a.out, a.net + ".safetensors"))
    with open(os.path.join(a.out, a.net + ".txt"), "w") as f:
        f.write(str(model))
    criterion = torch.nn.CrossEntropyLoss()
    data = (inputs, torch.from_numpy(y))

    ph = sys.modules["pyhessian.hessian"]
    counter = {"hvp": 0}
    original = ph.hessian_vector_product

    def counting(gradsH, params, v):
        counter["hvp"] += 1
        return original(gradsH, params, v)

    ph.hessian_vector_product = counting

    def timed(fn):
        times, hvps, value = [], [], None
        for _ in range(a.repeats):
            counter["hvp"] = 0
            t0 = time.perf_counter()
            comp = ph.hessian(model, criterion, data=data, cuda=False)  # includes its gradient pass
            value = fn(comp)
            times.append(time.perf_counter() - t0)
            hvps.append(counter["hvp"])
        return {"median_s": statistics.median(times), "times_s": times, "hvps_per_repeat": hvps, "hvps": int(statistics.median(hvps)), "value": value}

    top = timed(lambda c: float(c.eigenvalues(top_n=1)[0][0]))
    tr = timed(lambda c: float(np.mean(c.trace())))
    # The same estimator with exactly 100 probes: the like-for-like comparison with a 100-probe
    # Hutchinson estimate and its standard error. Its stopping test is
    # abs(mean - prev) / (prev + 1e-6) < tol, which is negative (so it stops at once) whenever the
    # previous running mean is negative, even for tol = 0; only tol = -inf never stops early.
    tr100 = timed(lambda c: float(np.mean(c.trace(maxIter=100, tol=-float("inf")))))
    print(json.dumps({
        "net": a.net,
        "threads": a.threads,
        "samples": a.samples,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "pyhessian": getattr(pyhessian, "__version__", "0.1"), "numpy": np.__version__},
        "top_eigenvalue": top,
        "trace": tr,
        "trace_100_probes": tr100,
    }))


if __name__ == "__main__":
    main()
