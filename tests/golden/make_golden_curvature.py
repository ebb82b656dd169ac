#!/usr/bin/env python3
"""Golden curvature values (Hessian / GGN spectra) for sgdlab, computed with JAX in float64.

This script is independent of sgdlab: it re-implements sgdlab's conventions (the same ones as
tests/golden/make_golden.py: PyTorch nn.Sequential MLPs, PyTorch losses and reductions) from
scratch in JAX, materialises the full Hessian of the mean loss over all N examples with
jax.hessian, the GGN J^T H_z J with jax.jacfwd / jax.hessian, and writes scalar functions of their
spectra to tests/golden/golden_curvature.json. Never regenerate the JSON from sgdlab itself.

Run (from the repository root, with the reference venv, see tests/golden/README.md):
    $VENV/bin/python tests/golden/make_golden_curvature.py
"""

import json
import math
import os
import platform
import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import numpy as np  # noqa: E402
from jax.scipy.special import erf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden_curvature.json")

NEAR_ZERO_TAU = 1e-3  # near_zero_fraction: #{|lambda| < tau * lambda_max} / P
EFF_DIM_Z = 1.0  # effective_dimensionality: sum max(lambda,0) / (max(lambda,0) + z)
RELU_MARGIN = 1e-3

# --------------------------------------------------------------------------------------------------
# Model: mlp:D0-D1-...-Dn:ACT == nn.Sequential(Linear(D0,D1), ACT, ..., Linear(D_{n-1},Dn))
# --------------------------------------------------------------------------------------------------

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "gelu": lambda x: x * 0.5 * (1.0 + erf(x / math.sqrt(2.0))),  # exact erf form
    "relu": lambda x: jnp.maximum(x, 0.0),
}


def parse_arch(arch):
    kind, widths, act = arch.split(":")
    assert kind == "mlp"
    return [int(w) for w in widths.split("-")], act


def param_layout(widths):
    """PyTorch state_dict names and shapes, in flat-vector order."""
    names, shapes = [], []
    for layer in range(len(widths) - 1):
        idx = 2 * layer  # the activation modules take the odd indices
        names += [f"{idx}.weight", f"{idx}.bias"]
        shapes += [(widths[layer + 1], widths[layer]), (widths[layer + 1],)]
    return names, shapes


def unflatten(theta, shapes):
    out, off = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(theta[off:off + n].reshape(s))
        off += n
    assert off == theta.shape[0]
    return out


def make_forward(widths, act_name):
    _, shapes = param_layout(widths)
    act = ACTIVATIONS[act_name]
    n_layers = len(widths) - 1

    def forward(theta, x):
        """x: [B, D0] -> logits [B, Dn]. Linear: y = x W^T + b (row-major W [out, in])."""
        ps = unflatten(theta, shapes)
        h = x
        for layer in range(n_layers):
            w, b = ps[2 * layer], ps[2 * layer + 1]
            h = h @ w.T + b
            if layer < n_layers - 1:
                h = act(h)
        return h

    def preactivations(theta, x):
        ps = unflatten(theta, shapes)
        h, pre = x, []
        for layer in range(n_layers - 1):
            a = h @ ps[2 * layer].T + ps[2 * layer + 1]
            pre.append(a)
            h = act(a)
        return pre

    return forward, preactivations


# --------------------------------------------------------------------------------------------------
# Losses on logits z [B, K] (PyTorch conventions, reduction "mean")
# --------------------------------------------------------------------------------------------------


def mean_loss(loss, z, y):
    b, k = z.shape
    if loss == "cross_entropy":  # mean over the B examples
        logp = jax.nn.log_softmax(z, axis=-1)
        return -jnp.sum(jnp.take_along_axis(logp, y[:, None], axis=-1)) / b
    if loss == "mse":  # mean over all B*K elements
        return jnp.sum((z - y) ** 2) / (b * k)
    raise ValueError(loss)


# --------------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------------

CASES = [
    # name, arch, loss, N, seed
    ("a_tanh_ce_mean", "mlp:6-10-8-4:tanh", "cross_entropy", 50, 2001),
    ("b_gelu_mse_mean", "mlp:5-12-3:gelu", "mse", 40, 2002),
    ("c_relu_ce_mean", "mlp:6-10-8-4:relu", "cross_entropy", 50, 2003),
]


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def make_case(name, arch, loss, n, seed):
    widths, act = parse_arch(arch)
    names, shapes = param_layout(widths)
    d0, k = widths[0], widths[-1]
    forward, preactivations = make_forward(widths, act)
    rng = np.random.default_rng(seed)

    # Parameters: weights N(0, 1/fan_in), biases N(0, 0.1^2), in state_dict order.
    params = []
    for s in shapes:
        if len(s) == 2:
            params.append(rng.normal(0.0, 1.0 / math.sqrt(s[1]), size=s))
        else:
            params.append(rng.normal(0.0, 0.1, size=s))
    theta_np = np.concatenate([p.reshape(-1) for p in params])
    theta = jnp.asarray(theta_np)
    p_count = theta_np.shape[0]

    # Inputs N(0, 1); for relu resample the whole x until no hidden pre-activation is within
    # RELU_MARGIN of 0 (so the ReLU derivatives, hence H, are unambiguous).
    resamples = 0
    while True:
        x_np = rng.normal(0.0, 1.0, size=(n, d0))
        if act != "relu":
            break
        pre = preactivations(theta, jnp.asarray(x_np))
        if all(float(jnp.min(jnp.abs(a))) > RELU_MARGIN for a in pre):
            break
        resamples += 1
        assert resamples < 10000
    x = jnp.asarray(x_np)

    # Targets.
    if loss == "cross_entropy":
        y_np = rng.integers(0, k, size=n)
        y = jnp.asarray(y_np, dtype=jnp.int32)
    elif loss == "mse":
        y_np = rng.normal(0.0, 1.0, size=(n, k))
        y = jnp.asarray(y_np)
    else:
        raise ValueError(loss)

    # Random direction for the HVP cross-check (not stored).
    v_np = rng.normal(0.0, 1.0, size=p_count)
    v = jnp.asarray(v_np)

    def loss_of_theta(th):
        return mean_loss(loss, forward(th, x), y)

    def logits_of_theta(th):
        return forward(th, x)

    def loss_of_logits(z):
        return mean_loss(loss, z, y)

    loss_value = float(loss_of_theta(theta))
    grad_fn = jax.grad(loss_of_theta)
    gradient = np.asarray(grad_fn(theta))
    gradient_norm = float(np.linalg.norm(gradient))

    # ---------------------------------------------------------------- Hessian
    h_raw = np.asarray(jax.hessian(loss_of_theta)(theta))
    assert h_raw.shape == (p_count, p_count)
    sym_err = float(np.max(np.abs(h_raw - h_raw.T)) / np.max(np.abs(h_raw)))
    assert sym_err < 1e-12, (name, "hessian symmetry", sym_err)
    h = 0.5 * (h_raw + h_raw.T)
    hvp = np.asarray(jax.jvp(grad_fn, (theta,), (v,))[1])
    e = rel_err(hvp, h @ v_np)
    assert e < 1e-12, (name, "hvp (jvp of grad) vs hessian", e)

    eig = np.linalg.eigvalsh(h)  # ascending
    lmax = float(eig[-1])
    assert lmax > 0.0
    hessian_trace = float(np.trace(h))
    hessian_fro = float(np.linalg.norm(h, "fro"))
    assert abs(hessian_trace - float(np.sum(eig))) <= 1e-10 * np.sum(np.abs(eig)), (name, "trace vs eig")
    assert abs(hessian_fro - float(np.sqrt(np.sum(eig**2)))) <= 1e-10 * hessian_fro, (name, "fro vs eig")

    thr = NEAR_ZERO_TAU * lmax
    near_zero_count = int(np.sum(np.abs(eig) < thr))
    near_zero_fraction = near_zero_count / p_count
    # Robustness of the count: how far the |eigenvalue| closest to the threshold is from it,
    # relative to the threshold (a large margin means the count is insensitive to rounding).
    near_zero_margin = float(np.min(np.abs(np.abs(eig) - thr)) / thr)
    assert near_zero_margin > 1e-3, (name, "an eigenvalue is too close to the near-zero threshold")
    clamped = np.maximum(eig, 0.0)
    eff_dim = float(np.sum(clamped / (clamped + EFF_DIM_Z)))

    # ---------------------------------------------------------------- GGN = J^T H_z J
    z0 = logits_of_theta(theta)
    jac = np.asarray(jax.jacfwd(logits_of_theta)(theta)).reshape(n * k, p_count)
    hz = np.asarray(jax.hessian(loss_of_logits)(z0)).reshape(n * k, n * k)
    ggn = jac.T @ hz @ jac
    ggn = 0.5 * (ggn + ggn.T)
    # Second method: matrix-free J^T H_z J v via linearize / jvp / vjp.
    _, j_lin = jax.linearize(logits_of_theta, theta)
    hz_jv = jax.jvp(jax.grad(loss_of_logits), (z0,), (j_lin(v),))[1]
    (ggn_v,) = jax.vjp(logits_of_theta, theta)[1](hz_jv)
    e = rel_err(ggn @ v_np, ggn_v)
    assert e < 1e-12, (name, "ggn explicit vs matrix-free", e)
    if loss == "mse":
        e = rel_err(hz, (2.0 / (n * k)) * np.eye(n * k))
        assert e < 1e-14, (name, "mse H_z", e)
    ggn_eig = np.linalg.eigvalsh(ggn)
    assert ggn_eig[0] >= -1e-12 * ggn_eig[-1], (name, "ggn not PSD", ggn_eig[0])
    ggn_trace = float(np.trace(ggn))
    assert abs(ggn_trace - float(np.sum(ggn_eig))) <= 1e-10 * ggn_trace, (name, "ggn trace vs eig")
    if act == "relu":
        # Away from the kinks the logits are affine in each single layer's (weight, bias), so the
        # second-derivative term vanishes on the per-layer diagonal blocks: there H == GGN. (The
        # cross-layer blocks differ: the logits are multilinear across layers.)
        off = 0
        for li in range(len(widths) - 1):
            size = int(np.prod(shapes[2 * li])) + int(np.prod(shapes[2 * li + 1]))
            blk = slice(off, off + size)
            e = rel_err(h[blk, blk], ggn[blk, blk])
            assert e < 1e-12, (name, f"relu: hessian vs ggn, layer {li} block", e)
            off += size
        assert off == p_count

    # ---------------------------------------------------------------- other checks
    z = np.asarray(z0)
    if loss == "cross_entropy":
        m = z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
        direct = np.sum(lse - z[np.arange(n), y_np]) / n
    else:
        direct = np.sum((z - y_np) ** 2) / (n * k)
    assert abs(direct - loss_value) <= 1e-12 * max(1.0, abs(direct)), (name, "loss value")
    relu_margin = None
    if act == "relu":
        relu_margin = min(float(jnp.min(jnp.abs(a))) for a in preactivations(theta, x))
        assert relu_margin > RELU_MARGIN
    for arr in (h, ggn, eig, ggn_eig, gradient):
        assert np.all(np.isfinite(arr))

    case = {
        "name": name,
        "arch": arch,
        "loss": loss,
        "reduction": "mean",
        "batch_size": n,
        "num_params": p_count,
        "seed": seed,
        "param_names": names,
        "param_shapes": {nm: list(s) for nm, s in zip(names, shapes)},
        "params": {nm: p.tolist() for nm, p in zip(names, params)},
        "x": x_np.tolist(),
        "y": y_np.tolist(),
        "loss_value": loss_value,
        "gradient_norm": gradient_norm,
        "hessian_top3": [float(t) for t in eig[::-1][:3]],
        "hessian_bottom3": [float(t) for t in eig[:3]],
        "hessian_trace": hessian_trace,
        "hessian_frobenius_norm": hessian_fro,
        "ggn_top3": [float(t) for t in ggn_eig[::-1][:3]],
        "ggn_trace": ggn_trace,
        "near_zero_tau": NEAR_ZERO_TAU,
        "near_zero_count": near_zero_count,
        "near_zero_fraction": near_zero_fraction,
        "near_zero_threshold_rel_margin": near_zero_margin,
        "effective_dimensionality_z": EFF_DIM_Z,
        "effective_dimensionality_z1": eff_dim,
        "hessian_negative_count": int(np.sum(eig < 0.0)),
        "hessian_eigenvalues": [float(t) for t in eig],
        "cross_checks": {
            "hessian_symmetry_rel": sym_err,
            "ggn_min_eigenvalue": float(ggn_eig[0]),
        },
    }
    if relu_margin is not None:
        case["relu_min_abs_preactivation"] = relu_margin
        case["relu_resamples"] = resamples
    if loss == "cross_entropy":
        assert all(isinstance(t, int) for t in case["y"])
    print(
        f"{name:18s} {arch:20s} {loss:13s} N={n} P={p_count:3d} loss={loss_value:.12g} "
        f"top3={case['hessian_top3']} trace={hessian_trace:.12g} "
        f"near_zero={near_zero_count}/{p_count}={near_zero_fraction:.6g}"
        + (f" (relu resamples: {resamples}, margin {relu_margin:.4g})" if act == "relu" else "")
    )
    return case


def dumps_readable(doc):
    """JSON with one line per case field (compact values): reviewable diffs, small file."""
    lines = ["{"]
    for key in ("generator", "versions", "dtype", "conventions"):
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
    doc = {
        "generator": "tests/golden/make_golden_curvature.py",
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "numpy": np.__version__,
        },
        "dtype": "float64",
        "conventions": (
            "H = jax.hessian of the mean loss over all N examples w.r.t. the flat parameter vector, "
            "symmetrised (H+H^T)/2 before numpy.linalg.eigvalsh; GGN = J^T H_z J (J: jacfwd of all "
            "N*K logits, H_z: jax.hessian of the mean loss w.r.t. the logits); near_zero_fraction = "
            "#{|lambda| < near_zero_tau * lambda_max} / P over the full Hessian spectrum; "
            "effective_dimensionality_z1 = sum max(lambda,0)/(max(lambda,0)+1) over it"
        ),
        "cases": [make_case(*c) for c in CASES],
    }
    with open(OUT, "w") as f:
        f.write(dumps_readable(doc))
    # Round-trip check: floats survive the JSON exactly.
    with open(OUT) as f:
        back = json.load(f)
    assert back == doc
    print(f"wrote {os.path.relpath(OUT)} ({os.path.getsize(OUT)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
