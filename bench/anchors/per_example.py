#!/usr/bin/env python3
"""Per-example gradients in PyTorch, the anchors of `cargo bench -p sgdlab-nn --bench passes --
per_example` (bench/README.md): BackPACK's BatchGrad and torch.func's vmap(grad), on the MLP
784-512-512-10 (ReLU) and LeNet-5, batch 128, float32, random inputs (N(0,1)) and labels, cross
entropy with mean reduction (the per-example gradients are those of the mean loss, as sgdlab's
`per_example_gradients` returns them; the time does not depend on the scale).

Each measurement is the median wall time of REPS calls after WARMUP calls, each producing the full
batch x parameters output (the output tensors are kept until the next call, as a caller would).
Prints one JSON line per (model, method): model, method, threads, batch, params, median_ms, min_ms.

Usage: python per_example.py [--threads N] [--reps 20] [--warmup 3] [--models mlp,lenet5]
"""

import argparse
import json
import statistics
import time

import torch
from torch import nn


def mlp():
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


MODELS = {"mlp": (mlp, (784,)), "lenet5": (lenet5, (1, 28, 28))}


def timed(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3, min(ts) * 1e3


def backpack_batchgrad(make, x, y):
    from backpack import backpack, extend
    from backpack.extensions import BatchGrad

    model = extend(make())
    loss_fn = extend(nn.CrossEntropyLoss())
    params = [p for p in model.parameters()]
    keep = {}

    def step():
        for p in params:
            p.grad = None
            if hasattr(p, "grad_batch"):
                del p.grad_batch
        loss = loss_fn(model(x), y)
        with backpack(BatchGrad()):
            loss.backward()
        keep["g"] = [p.grad_batch for p in params]

    return step, sum(p.numel() for p in params)


def vmap_grad(make, x, y):
    from torch.func import functional_call, grad, vmap

    model = make()
    params = {k: v.detach() for k, v in model.named_parameters()}
    n = x.shape[0]

    def loss_one(p, xi, yi):
        out = functional_call(model, p, (xi.unsqueeze(0),))
        # Each example's gradient of the mean loss over the batch.
        return nn.functional.cross_entropy(out, yi.unsqueeze(0)) / n

    g = vmap(grad(loss_one), in_dims=(None, 0, 0))
    keep = {}

    def step():
        keep["g"] = g(params, x, y)

    return step, sum(v.numel() for v in params.values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--models", default="mlp,lenet5")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    for name in a.models.split(","):
        make, shape = MODELS[name]
        x = torch.randn(a.batch, *shape)
        y = torch.randint(0, 10, (a.batch,))
        for method, build in [("backpack-batchgrad", backpack_batchgrad), ("torch.func-vmap-grad", vmap_grad)]:
            step, params = build(make, x, y)
            med, best = timed(step, a.reps, a.warmup)
            print(json.dumps(dict(model=name, method=method, threads=a.threads, batch=a.batch, params=params,
                                  median_ms=round(med, 2), min_ms=round(best, 2), torch=torch.__version__)))


if __name__ == "__main__":
    main()
