#!/usr/bin/env python3
"""Golden values for sgdlab's Sobolev-weighted loss (Yu, Yang & Townsend 2022; PROTOCOLS 2.4),
computed with JAX autodiff and jnp.fft in float64.

Independent of sgdlab: the MLP (PyTorch nn.Sequential conventions, as in make_golden.py) and the
loss are re-implemented here from their definitions. For the residual r = f - y on a uniform grid
of N points (the batch, in grid order) and its unitary DFT r^_k = N^{-1/2} sum_j r_j e^{-2 pi i jk/N},

    L_s = sum_k (1 + k^2)^s |r^_k|^2      (reduction "sum"; "mean" divides by N),

k the signed frequency of bin k (jnp.fft.fftfreq(N, 1/N); the weight is even in k, so whether
bin N/2 of an even N counts as +N/2 or -N/2 does not matter). Writes
tests/golden/golden_sobolev.json. Never regenerate it from sgdlab itself.

Run (from the repository root, with the reference venv, see tests/golden/README.md):
    $VENV/bin/python tests/golden/make_golden_sobolev.py
"""

import json
import os
import platform
import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden_sobolev.json")

ARCH = "mlp:1-8-8-1:tanh"
WIDTHS = [1, 8, 8, 1]
SEED = 2401

# name, grid size N, exponent s, reduction
CASES = [
    ("n16_s-1_sum", 16, -1.0, "sum"),
    ("n16_s0_sum", 16, 0.0, "sum"),
    ("n16_s1_sum", 16, 1.0, "sum"),
    ("n16_s2_sum", 16, 2.0, "sum"),
    ("n16_s2_mean", 16, 2.0, "mean"),
    ("n15_s1_sum", 15, 1.0, "sum"),
]


def param_layout(widths):
    """PyTorch state_dict names and shapes, in flat-vector order."""
    names, shapes = [], []
    for layer in range(len(widths) - 1):
        idx = 2 * layer
        names += [f"{idx}.weight", f"{idx}.bias"]
        shapes += [(widths[layer + 1], widths[layer]), (widths[layer + 1],)]
    return names, shapes


NAMES, SHAPES = param_layout(WIDTHS)


def unflatten(theta):
    out, off = [], 0
    for s in SHAPES:
        n = int(np.prod(s))
        out.append(theta[off:off + n].reshape(s))
        off += n
    assert off == theta.shape[0]
    return out


def forward(theta, x):
    """x [N, 1] -> f [N, 1]; Linear: x W^T + b; tanh between linears."""
    ps = unflatten(theta)
    h = x
    n_layers = len(WIDTHS) - 1
    for layer in range(n_layers):
        h = h @ ps[2 * layer].T + ps[2 * layer + 1]
        if layer < n_layers - 1:
            h = jnp.tanh(h)
    return h


def sobolev_loss(f, y, s, reduction):
    """L_s of the residual column f - y ([N, 1]) by jnp.fft (unitary DFT)."""
    r = (f - y)[:, 0]
    n = r.shape[0]
    rh = jnp.fft.fft(r, norm="ortho")
    k = jnp.fft.fftfreq(n, d=1.0 / n)
    w = (1.0 + k**2) ** s
    total = jnp.sum(w * (jnp.real(rh) ** 2 + jnp.imag(rh) ** 2))
    return total / n if reduction == "mean" else total


def naive_matrix(n, s):
    """A = F^* diag(w) F by the O(N^2) DFT matrix, k in (-N/2, N/2] (independent cross-check)."""
    j = np.arange(n)
    f = np.exp(-2j * np.pi * np.outer(j, j) / n) / np.sqrt(n)
    k = np.where(2 * j <= n, j, j - n).astype(float)
    w = (1.0 + k**2) ** s
    a = f.conj().T @ np.diag(w) @ f
    assert np.max(np.abs(a.imag)) < 1e-12 * np.max(np.abs(a.real))
    return a.real


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def make_params(rng):
    ps = []
    for shape in SHAPES:
        if len(shape) == 2:
            ps.append(rng.normal(0.0, 1.0 / np.sqrt(shape[1]), size=shape))
        else:
            ps.append(rng.normal(0.0, 0.1, size=shape))
    return ps


def grid_and_targets(n):
    x = (np.arange(n) / n)[:, None]
    t = 2 * np.pi * x
    y = np.sin(t) + 0.5 * np.cos(3 * t) + 0.25 * np.sin(7 * t)
    return x, y


def make_case(name, n, s, reduction, params, v):
    theta = jnp.asarray(np.concatenate([p.ravel() for p in params]))
    x, y = grid_and_targets(n)
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def objective(th):
        return sobolev_loss(forward(th, xj), yj, s, reduction)

    value = objective(theta)
    grad = jax.grad(objective)(theta)
    vj = jnp.asarray(v)
    hvp = jax.jvp(jax.grad(objective), (theta,), (vj,))[1]

    # Cross-checks against an explicit formula: L = r^T A r, grad = 2 J^T A r, H v by jax.hessian.
    a = naive_matrix(n, s) / (n if reduction == "mean" else 1.0)
    f = np.asarray(forward(theta, xj))
    r = (f - y)[:, 0]
    assert rel_err(value, r @ a @ r) < 1e-12, name
    jac = np.asarray(jax.jacfwd(lambda th: forward(th, xj)[:, 0])(theta))
    assert rel_err(grad, 2 * jac.T @ a @ r) < 1e-12, name
    h = np.asarray(jax.hessian(objective)(theta))
    assert rel_err(h, h.T) < 1e-12, name
    assert rel_err(hvp, h @ v) < 1e-12, name
    if s == 0.0:
        assert rel_err(value, np.sum(r**2) / (n if reduction == "mean" else 1.0)) < 1e-12, name
    print(f"{name:14s} N={n:2d} s={s:+.0f} {reduction:4s} loss={float(value):.12g}")
    return {
        "name": name,
        "arch": ARCH,
        "n": n,
        "s": s,
        "reduction": reduction,
        "param_names": NAMES,
        "params": {nm: p.tolist() for nm, p in zip(NAMES, params)},
        "x": x.tolist(),
        "y": y.tolist(),
        "v": list(map(float, v)),
        "logits": f.tolist(),
        "loss": float(value),
        "gradient": np.asarray(grad).tolist(),
        "hvp": np.asarray(hvp).tolist(),
    }


def dumps_readable(doc):
    """JSON with one line per case field: reviewable diffs."""
    lines = ["{"]
    for key in ("generator", "versions", "dtype", "seed"):
        lines.append(f" {json.dumps(key)}: {json.dumps(doc[key])},")
    lines.append(' "cases": [')
    for ci, case in enumerate(doc["cases"]):
        lines.append("  {")
        items = list(case.items())
        for i, (key, val) in enumerate(items):
            sep = "," if i < len(items) - 1 else ""
            lines.append(f"   {json.dumps(key)}: {json.dumps(val)}{sep}")
        lines.append("  }" + ("," if ci < len(doc["cases"]) - 1 else ""))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    rng = np.random.default_rng(SEED)
    params = make_params(rng)
    n_params = sum(int(np.prod(s)) for s in SHAPES)
    v = rng.normal(size=n_params)
    doc = {
        "generator": "tests/golden/make_golden_sobolev.py",
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "numpy": np.__version__,
        },
        "dtype": "float64",
        "seed": SEED,
        "cases": [make_case(name, n, s, red, params, v) for name, n, s, red in CASES],
    }
    with open(OUT, "w") as f:
        f.write(dumps_readable(doc))
    with open(OUT) as f:
        back = json.load(f)
    assert back == doc
    print(f"wrote {os.path.relpath(OUT)} ({os.path.getsize(OUT)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
