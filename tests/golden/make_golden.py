#!/usr/bin/env python3
"""Golden values for sgdlab's derivative engine, computed with JAX autodiff in float64.

This script is independent of sgdlab: it re-implements the conventions (PyTorch nn.Sequential MLPs,
PyTorch losses and reductions, BackPACK-style per-example gradients) from scratch in JAX and writes
tests/golden/golden_mlp.json. Never regenerate the JSON from sgdlab itself.

Run (from the repository root, with the reference venv, see tests/golden/README.md):
    $VENV/bin/python tests/golden/make_golden.py
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
OUT = os.path.join(HERE, "golden_mlp.json")

# --------------------------------------------------------------------------------------------------
# Model: mlp:D0-D1-...-Dn:ACT == nn.Sequential(Linear(D0,D1), ACT, ..., Linear(D_{n-1},Dn))
# --------------------------------------------------------------------------------------------------

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "gelu": lambda x: x * 0.5 * (1.0 + erf(x / math.sqrt(2.0))),  # exact erf form
    "softplus": lambda x: jnp.logaddexp(x, 0.0),  # log(1 + exp(x)), computed stably
    "sigmoid": lambda x: 1.0 / (1.0 + jnp.exp(-x)),
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
        """x: [B, D0] -> logits [B, Dn]. Linear: y = x W^T + b."""
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
# Losses on logits z [B, K] (PyTorch conventions)
# --------------------------------------------------------------------------------------------------


def per_example_losses(loss, z, y):
    """Unnormalised per-example losses [B] whose plain sum is the 'sum'-reduced loss."""
    if loss == "cross_entropy":
        logp = jax.nn.log_softmax(z, axis=-1)
        return -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]
    if loss == "mse":
        return jnp.sum((z - y) ** 2, axis=-1)
    if loss == "logistic":
        # BCEWithLogits: softplus(z) - y z, K = 1
        return jnp.sum(jnp.logaddexp(z, 0.0) - y * z, axis=-1)
    raise ValueError(loss)


def normaliser(loss, reduction, batch, k):
    if reduction == "sum":
        return 1.0
    assert reduction == "mean"
    return float(batch * k) if loss == "mse" else float(batch)


def reduced_loss(loss, reduction, z, y):
    b, k = z.shape
    return jnp.sum(per_example_losses(loss, z, y)) / normaliser(loss, reduction, b, k)


# --------------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------------

CASES = [
    # name, arch, loss, reduction, batch, seed
    ("a_tanh_ce_mean", "mlp:5-8-6-3:tanh", "cross_entropy", "mean", 4, 1001),
    ("b_gelu_mse_mean", "mlp:5-8-6-3:gelu", "mse", "mean", 4, 1002),
    ("c_softplus_logistic_sum", "mlp:5-8-6-1:softplus", "logistic", "sum", 4, 1003),
    ("d_sigmoid_ce_sum", "mlp:5-8-6-3:sigmoid", "cross_entropy", "sum", 3, 1004),
    ("e_relu_mse_sum", "mlp:4-7-3:relu", "mse", "sum", 4, 1005),
]

RELU_MARGIN = 1e-3


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def make_case(name, arch, loss, reduction, batch, seed):
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
    n_params = theta_np.shape[0]

    # Inputs N(0, 1); for relu resample until no pre-activation is within RELU_MARGIN of 0.
    resamples = 0
    while True:
        x_np = rng.normal(0.0, 1.0, size=(batch, d0))
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
        y_np = rng.integers(0, k, size=batch)
        y = jnp.asarray(y_np, dtype=jnp.int32)
    elif loss == "mse":
        y_np = rng.normal(0.0, 1.0, size=(batch, k))
        y = jnp.asarray(y_np)
    elif loss == "logistic":
        assert k == 1
        y_np = rng.integers(0, 2, size=(batch, 1)).astype(np.float64)
        y = jnp.asarray(y_np)
    else:
        raise ValueError(loss)

    v_np = rng.normal(0.0, 1.0, size=n_params)
    v = jnp.asarray(v_np)

    def loss_of_theta(th):
        return reduced_loss(loss, reduction, forward(th, x), y)

    def logits_of_theta(th):
        return forward(th, x)

    def loss_of_logits(z):
        return reduced_loss(loss, reduction, z, y)

    logits = forward(theta, x)
    loss_value = loss_of_theta(theta)
    grad_fn = jax.grad(loss_of_theta)
    gradient = grad_fn(theta)

    # HVP: forward-over-reverse.
    hvp = jax.jvp(grad_fn, (theta,), (v,))[1]

    # GGN-vector product: J^T H_z J v with J = d logits / d theta (all examples).
    z0, j_lin = jax.linearize(logits_of_theta, theta)
    jv = j_lin(v)
    hz_jv = jax.jvp(jax.grad(loss_of_logits), (z0,), (jv,))[1]
    _, j_vjp = jax.vjp(logits_of_theta, theta)
    (ggn_vp,) = j_vjp(hz_jv)

    # Per-example gradients: the contribution of example i to the batch gradient.
    norm = normaliser(loss, reduction, batch, k)

    def single_loss(th, xi, yi):
        zi = forward(th, xi[None, :])
        return jnp.sum(per_example_losses(loss, zi, yi[None, ...])) / norm

    per_example = jax.vmap(jax.grad(single_loss), in_axes=(None, 0, 0))(theta, x, y)

    # Input Jacobians d z_i / d x_i: [B, K, D0].
    def single_logits(xi):
        return forward(theta, xi[None, :])[0]

    input_jac = jax.vmap(jax.jacrev(single_logits))(x)
    input_jac_sq_frob = jnp.sum(input_jac**2, axis=(1, 2))

    # ---------------------------------------------------------------- cross-checks (second methods)
    # HVP vs central differences of jax.grad.
    eps = 1e-5
    hvp_fd = (grad_fn(theta + eps * v) - grad_fn(theta - eps * v)) / (2 * eps)
    e = rel_err(hvp, hvp_fd)
    assert e < 1e-6, (name, "hvp vs finite differences", e)
    # HVP vs the full Hessian.
    e = rel_err(hvp, jax.hessian(loss_of_theta)(theta) @ v)
    assert e < 1e-12, (name, "hvp vs hessian", e)
    # Per-example gradients sum to the gradient.
    e = rel_err(jnp.sum(per_example, axis=0), gradient)
    assert e < 1e-12, (name, "per-example sum", e)
    # GGN vs J^T H_z J built explicitly with jacfwd.
    jac = jax.jacfwd(logits_of_theta)(theta).reshape(batch * k, n_params)
    hz = jax.hessian(loss_of_logits)(z0).reshape(batch * k, batch * k)
    e = rel_err(ggn_vp, jac.T @ (hz @ (jac @ v)))
    assert e < 1e-12, (name, "ggn vs explicit", e)
    # Input Jacobian: jacrev vs jacfwd on the whole batch (block diagonal).
    full = jax.jacfwd(lambda xx: forward(theta, xx))(x)  # [B, K, B, D0]
    diag = jnp.stack([full[i, :, i, :] for i in range(batch)])
    e = rel_err(input_jac, diag)
    assert e < 1e-12, (name, "input jacobian jacrev vs jacfwd", e)
    # Loss value vs a direct formula in numpy.
    z = np.asarray(logits)
    if loss == "cross_entropy":
        m = z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
        direct = np.sum(lse - z[np.arange(batch), y_np])
    elif loss == "mse":
        direct = np.sum((z - y_np) ** 2)
    else:
        direct = np.sum(np.log1p(np.exp(z)) - y_np * z)
    direct /= norm
    assert abs(direct - float(loss_value)) <= 1e-12 * max(1.0, abs(direct)), (name, "loss value")
    # Margin check for relu (so the golden derivatives are unambiguous).
    if act == "relu":
        for a in preactivations(theta, x):
            assert float(jnp.min(jnp.abs(a))) > RELU_MARGIN
    for arr in (logits, gradient, hvp, ggn_vp, per_example, input_jac):
        assert bool(jnp.all(jnp.isfinite(arr)))

    case = {
        "name": name,
        "arch": arch,
        "loss": loss,
        "reduction": reduction,
        "batch_size": batch,
        "num_params": n_params,
        "seed": seed,
        "param_names": names,
        "param_shapes": {n: list(s) for n, s in zip(names, shapes)},
        "params": {n: p.tolist() for n, p in zip(names, params)},
        "x": x_np.tolist(),
        "y": y_np.tolist(),
        "v": v_np.tolist(),
        "logits": np.asarray(logits).tolist(),
        "loss_value": float(loss_value),
        "gradient": np.asarray(gradient).tolist(),
        "hvp": np.asarray(hvp).tolist(),
        "ggn_vp": np.asarray(ggn_vp).tolist(),
        "per_example_gradients": np.asarray(per_example).tolist(),
        "input_jacobian": np.asarray(input_jac).tolist(),
        "input_jacobian_sq_frobenius": np.asarray(input_jac_sq_frob).tolist(),
    }
    if loss == "cross_entropy":
        assert all(isinstance(t, int) for t in case["y"])
    print(
        f"{name:26s} {arch:22s} {loss:13s} {reduction:4s} B={batch} P={n_params:3d} "
        f"loss={float(loss_value):.12g}" + (f" (relu resamples: {resamples})" if act == "relu" else "")
    )
    return case


def dumps_readable(doc):
    """JSON with one line per case field (compact values): reviewable diffs, small file."""
    lines = ["{"]
    lines.append(f' "generator": {json.dumps(doc["generator"])},')
    lines.append(f' "versions": {json.dumps(doc["versions"])},')
    lines.append(f' "dtype": {json.dumps(doc["dtype"])},')
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
        "generator": "tests/golden/make_golden.py",
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "numpy": np.__version__,
        },
        "dtype": "float64",
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
