#!/usr/bin/env python3
"""PyTorch eager anchor for the side-by-side training benchmarks (bench/README.md).

Job S: MNIST-1D (4,000 train / 1,000 test, the frozen arrays in ../shared/data/mnist1d/*.npy),
       MLP 40-100-100-10 ReLU, SGD lr 0.1, batch 32, 20 epochs (2,500 steps).
Job L: 10,000 x 784 Gaussian-mixture data (10 classes, + 1,000 test), generated here with numpy,
       MLP 784-512-512-10 ReLU, SGD lr 0.01, batch 128 (last batch of an epoch 16), 5 epochs (395 steps).
Job C: the MNIST test set (../shared/data/mnist, gzipped IDX, pixel / 255) split 8,000 / 2,000,
       LeNet-5 (Conv2d(1,6,5,padding=2), ReLU, MaxPool2d(2), Conv2d(6,16,5), ReLU, MaxPool2d(2),
       Flatten, Linear(400,120), ReLU, Linear(120,84), ReLU, Linear(84,10)), SGD lr 0.05,
       batch 64, 2 epochs (250 steps).

The loop mirrors what `sgdlab train` does with the specs in bench/jobs/ (f32, PyTorch default init,
manual shuffling, the last partial batch kept, evaluation of 1,000 train examples and the whole
test split at step 0 and at the end, nothing in between), written as a PyTorch user would: no
DataLoader, CrossEntropyLoss, torch.optim.SGD, zero_grad(set_to_none=True), no per-step .item().

Prints one JSON line on stdout with the timing breakdown:
  import_s  time to `import torch` (+ numpy), measured inside the process
  data_s    loading (S: .npy files) or generating (L: numpy) the data, to torch tensors
  setup_s   building the model and the optimizer (the first torch.optim.SGD(...) in a process
            costs about 1 s of lazy imports in torch 2.x)
  loop_s    the training loop, including the evaluations at step 0 and at the end
            (the counterpart of sgdlab's record.json wall_time_s)
  total_s   from the first line of this script to the end (excludes interpreter start-up,
            which only the whole-process timing by hyperfine sees)

Usage: python torch_train.py --job S|L|C --threads N [--data-dir DIR]
"""

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

JOBS = {
    "S": dict(sizes=[40, 100, 100, 10], lr=0.1, batch=32, epochs=20),
    "L": dict(sizes=[784, 512, 512, 10], lr=0.01, batch=128, epochs=5),
    "C": dict(sizes=None, lr=0.05, batch=64, epochs=2),
}


def lenet5(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def mnist_test_set(np, mnist_dir):
    """The 10,000 MNIST test images [n, 1, 28, 28] (pixel / 255, float32) and labels."""
    import gzip

    with gzip.open(os.path.join(mnist_dir, "t10k-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read()[16:], dtype=np.uint8).reshape(-1, 1, 28, 28).astype(np.float32) / np.float32(255)
    with gzip.open(os.path.join(mnist_dir, "t10k-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read()[8:], dtype=np.uint8).astype(np.int64)
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", choices=sorted(JOBS), required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--data-dir",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/data/mnist1d"),
        help="frozen MNIST-1D arrays (job S)",
    )
    args = ap.parse_args()
    job = JOBS[args.job]

    t = time.perf_counter()
    import numpy as np
    import torch

    import_s = time.perf_counter() - t
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    # ---- data ----------------------------------------------------------------------------
    t = time.perf_counter()
    if args.job == "C":
        mnist = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/data/mnist")
        x_all, y_all = mnist_test_set(np, mnist)
        perm = np.random.default_rng(args.seed).permutation(len(y_all))
        x_train, y_train = x_all[perm[2000:]], y_all[perm[2000:]]
        x_test, y_test = x_all[perm[:2000]], y_all[perm[:2000]]
    elif args.job == "S":
        d = args.data_dir
        x_train = np.load(os.path.join(d, "x_train.npy")).astype(np.float32)
        y_train = np.load(os.path.join(d, "y_train.npy")).astype(np.int64)
        x_test = np.load(os.path.join(d, "x_test.npy")).astype(np.float32)
        y_test = np.load(os.path.join(d, "y_test.npy")).astype(np.int64)
    else:
        # Same shape and law as sgdlab's gaussian-mixture:classes=10,d=784,n=10000,n_test=1000
        # (class means at separation 2 in random directions, isotropic noise sd 1; not the same
        # draws, which do not matter for timing).
        rng = np.random.default_rng(args.seed)
        k, dim, n, n_test = 10, 784, 10000, 1000
        means = rng.standard_normal((k, dim)).astype(np.float32)
        means *= 2.0 / np.linalg.norm(means, axis=1, keepdims=True)
        y_train = rng.permutation(np.arange(n) % k)
        y_test = rng.permutation(np.arange(n_test) % k)
        x_train = (means[y_train] + rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float32)
        x_test = (means[y_test] + rng.standard_normal((n_test, dim), dtype=np.float32)).astype(np.float32)
    X = torch.from_numpy(x_train)
    Y = torch.from_numpy(y_train)
    XT = torch.from_numpy(x_test)
    YT = torch.from_numpy(y_test)
    data_s = time.perf_counter() - t

    # ---- model ---------------------------------------------------------------------------
    t = time.perf_counter()
    sizes = job["sizes"]
    layers = []
    for i in range(len(sizes) - 1 if sizes else 0):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))  # PyTorch default init
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers) if sizes else lenet5(torch)
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=job["lr"])
    n = X.shape[0]
    b = job["batch"]
    g = torch.Generator().manual_seed(args.seed)
    eval_idx = torch.randperm(n, generator=g)[:1000]
    setup_s = time.perf_counter() - t  # mostly torch.optim's first construction (lazy imports)

    def evaluate():
        with torch.no_grad():
            out = {}
            for name, xs, ys in (("train", X[eval_idx], Y[eval_idx]), ("test", XT, YT)):
                z = model(xs)
                out[name + "_loss"] = loss_fn(z, ys).item()
                out[name + "_accuracy"] = (z.argmax(1) == ys).float().mean().item()
            return out

    # ---- loop ----------------------------------------------------------------------------
    t = time.perf_counter()
    evaluate()
    steps = 0
    for _epoch in range(job["epochs"]):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, b):
            idx = perm[i : i + b]
            xb = X[idx]
            yb = Y[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            steps += 1
    final = evaluate()
    loop_s = time.perf_counter() - t

    rec = dict(
        tool="pytorch",
        torch=torch.__version__,
        job=args.job,
        threads=args.threads,
        steps=steps,
        import_s=import_s,
        data_s=data_s,
        setup_s=setup_s,
        loop_s=loop_s,
        total_s=time.perf_counter() - _T0,
        **final,
    )
    json.dump(rec, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
