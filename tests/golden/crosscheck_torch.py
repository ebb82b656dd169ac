#!/usr/bin/env python3
"""Read-only cross-check of golden_mlp.json against real PyTorch modules and losses (float64).

make_golden.py re-implements PyTorch's conventions in JAX; this script confirms them against
torch.nn.Sequential / nn.CrossEntropyLoss / nn.MSELoss / nn.BCEWithLogitsLoss and torch.func.
It writes nothing.

Run (from the repository root):
    $VENV/bin/python tests/golden/crosscheck_torch.py
"""

import json
import os
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation noise on import

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.func import functional_call, grad, jacrev, jvp, vjp, vmap  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ACTS = {"tanh": nn.Tanh, "gelu": nn.GELU, "softplus": nn.Softplus, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}
TOL = 1e-10


def build(arch):
    _, widths, act = arch.split(":")
    widths = [int(w) for w in widths.split("-")]
    mods = []
    for i in range(len(widths) - 1):
        mods.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            mods.append(ACTS[act]())
    return nn.Sequential(*mods).double()


def loss_module(loss, reduction):
    return {
        "cross_entropy": nn.CrossEntropyLoss,
        "mse": nn.MSELoss,
        "logistic": nn.BCEWithLogitsLoss,
    }[loss](reduction=reduction)


def check(name, what, got, want):
    got, want = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(want, dtype=torch.float64)
    assert got.shape == want.shape, (name, what, got.shape, want.shape)
    err = ((got - want).abs().max() / want.abs().max().clamp_min(1e-300)).item()
    assert err < TOL, (name, what, err)
    return err


def main():
    with open(os.path.join(HERE, "golden_mlp.json")) as f:
        doc = json.load(f)
    for c in doc["cases"]:
        name = c["name"]
        model = build(c["arch"])
        sd = model.state_dict()
        assert list(sd.keys()) == c["param_names"], (name, list(sd.keys()))
        for n in c["param_names"]:
            assert list(sd[n].shape) == c["param_shapes"][n]
        params = {n: torch.tensor(c["params"][n], dtype=torch.float64) for n in c["param_names"]}
        shapes = [params[n].shape for n in c["param_names"]]
        theta = torch.cat([params[n].reshape(-1) for n in c["param_names"]])
        x = torch.tensor(c["x"], dtype=torch.float64)
        y = torch.tensor(c["y"], dtype=torch.int64 if c["loss"] == "cross_entropy" else torch.float64)
        v = torch.tensor(c["v"], dtype=torch.float64)
        crit = loss_module(c["loss"], c["reduction"])

        def unflat(th):
            out, off = {}, 0
            for n, s in zip(c["param_names"], shapes):
                k = s.numel()
                out[n] = th[off:off + k].reshape(s)
                off += k
            return out

        def logits_of(th, xx=x):
            return functional_call(model, unflat(th), (xx,))

        def loss_of(th):
            return crit(logits_of(th), y)

        def loss_of_z(z):
            return crit(z, y)

        errs = []
        errs.append(check(name, "logits", logits_of(theta), c["logits"]))
        errs.append(check(name, "loss", loss_of(theta), c["loss_value"]))
        g = grad(loss_of)(theta)
        errs.append(check(name, "gradient", g, c["gradient"]))
        # Reverse-over-reverse (a different route from make_golden.py's forward-over-reverse).
        hvp = torch.autograd.functional.hvp(loss_of, theta, v)[1]
        errs.append(check(name, "hvp", hvp, c["hvp"]))
        z0, jv = jvp(logits_of, (theta,), (v,))
        hz_jv = torch.autograd.functional.hvp(loss_of_z, z0, jv)[1]
        ggn = vjp(logits_of, theta)[1](hz_jv)[0]
        errs.append(check(name, "ggn_vp", ggn, c["ggn_vp"]))
        # Per-example contributions: gradient of the batch loss w.r.t. a per-example copy of theta.
        b = x.shape[0]
        thetas = theta.expand(b, -1).clone()

        def batch_loss_per_copy(ths):
            z = torch.stack([logits_of(ths[i], x[i:i + 1])[0] for i in range(b)])
            return crit(z, y)

        pe = grad(batch_loss_per_copy)(thetas)
        errs.append(check(name, "per_example_gradients", pe, c["per_example_gradients"]))
        ij = vmap(jacrev(lambda xi: logits_of(theta, xi[None, :])[0]))(x)
        errs.append(check(name, "input_jacobian", ij, c["input_jacobian"]))
        errs.append(check(name, "input_jacobian_sq_frobenius", (ij**2).sum(dim=(1, 2)),
                          c["input_jacobian_sq_frobenius"]))
        print(f"{name:26s} ok (max rel err {max(errs):.2e})")
    print(f"torch {torch.__version__}: all cases agree to {TOL:g}")


if __name__ == "__main__":
    main()
