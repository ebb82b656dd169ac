#!/usr/bin/env python3
"""Golden values for sgdlab's convolutional layers, computed with JAX autodiff in float64.

Independent of sgdlab: every layer is re-implemented here from PyTorch's definitions with
jax.lax primitives (conv_general_dilated, reduce_window) and writes tests/golden/golden_cnn.json.
Never regenerate the JSON from sgdlab itself. Each case lists its layers (PyTorch modules of an
nn.Sequential, parameters named by index as in its state_dict) and, for the Rust side, the same
architecture as an sgdlab `seq:` string; the Rust test checks that both give the same parameter
names and shapes.

Run (from the repository root, with the reference venv, see tests/golden/README.md):
    $VENV/bin/python tests/golden/make_golden_cnn.py
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
from jax import lax  # noqa: E402
from jax.scipy.special import erf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden_cnn.json")
EPS = 1e-5
KINK_MARGIN = 1e-3

# --------------------------------------------------------------------------------------------------
# Layers (PyTorch semantics). Each: (kind, options). Spatial pairs are (height, width); 1-d layers
# act on [N, C, L].
# --------------------------------------------------------------------------------------------------

ACT = {
    "relu": lambda x: jnp.maximum(x, 0.0),
    "tanh": jnp.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + jnp.exp(-x)),
    "gelu": lambda x: x * 0.5 * (1.0 + erf(x / math.sqrt(2.0))),
    "softplus": lambda x: jnp.logaddexp(x, 0.0),
}


def param_shapes(kind, o):
    """PyTorch state_dict tensors of a module: [(suffix, shape)]."""
    if kind in ("conv1d", "conv2d"):
        w = [o["cout"], o["cin"] // o["g"]] + list(o["k"])
        return [("weight", w)] + ([("bias", [o["cout"]])] if o["bias"] else [])
    if kind == "linear":
        return [("weight", [o["out"], o["in"]])] + ([("bias", [o["out"]])] if o["bias"] else [])
    if kind in ("bn1d", "bn2d", "layernorm"):
        return [("weight", [o["c"]]), ("bias", [o["c"]])] if o.get("affine", True) else []
    return []


def conv(x, w, b, o, dims):
    spatial = "HW"[-dims:] if dims == 2 else "H"
    dn = ("NC" + spatial, "OI" + spatial, "NC" + spatial)
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=tuple(o["s"]),
        padding=[(p, p) for p in o["p"]],
        rhs_dilation=tuple(o["d"]),
        dimension_numbers=dn,
        feature_group_count=o["g"],
        precision=lax.Precision.HIGHEST,
    )
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * dims)
    return y


def window_args(o, dims):
    k, s, p = tuple(o["k"]), tuple(o["s"]), tuple(o["p"])
    d = tuple(o.get("d", (1,) * dims))
    return (1, 1) + k, (1, 1) + s, ((0, 0), (0, 0)) + tuple((q, q) for q in p), (1, 1) + d


def maxpool(x, o, dims):
    win, strides, pad, dil = window_args(o, dims)
    return lax.reduce_window(x, -jnp.inf, lax.max, win, strides, pad, window_dilation=dil)


def avgpool(x, o, dims):
    win, strides, pad, _ = window_args(o, dims)
    total = lax.reduce_window(x, 0.0, lax.add, win, strides, pad)
    if o.get("count_include_pad", True):
        return total / float(np.prod(o["k"]))
    count = lax.reduce_window(jnp.ones_like(x), 0.0, lax.add, win, strides, pad)
    return total / count


def batch_norm_eval(x, w, b, rm, rv, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - rm.reshape(shape)) / jnp.sqrt(rv.reshape(shape) + eps)
    if w is not None:
        y = y * w.reshape(shape) + b.reshape(shape)
    return y


def make_forward(layers, names, shapes, buffers):
    """forward(theta, x [B, in_len]) -> logits, with x reshaped to the case's input shape."""

    def unflatten(theta):
        out, off = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            out[n] = theta[off : off + k].reshape(s)
            off += k
        assert off == theta.shape[0]
        return out

    def forward(theta, x, input_shape, taps=None):
        ps = unflatten(theta)
        h = x.reshape((x.shape[0],) + tuple(input_shape))
        for i, (kind, o) in enumerate(layers):
            w, b = ps.get(f"{i}.weight"), ps.get(f"{i}.bias")
            if taps is not None:
                taps.append((kind, o, h))
            if kind == "conv2d":
                h = conv(h, w, b, o, 2)
            elif kind == "conv1d":
                h = conv(h, w, b, o, 1)
            elif kind == "maxpool2d":
                h = maxpool(h, o, 2)
            elif kind == "maxpool1d":
                h = maxpool(h, o, 1)
            elif kind == "avgpool2d":
                h = avgpool(h, o, 2)
            elif kind == "avgpool1d":
                h = avgpool(h, o, 1)
            elif kind == "adaptiveavgpool2d_1":
                h = jnp.mean(h, axis=(2, 3), keepdims=True)
            elif kind in ("bn1d", "bn2d"):
                h = batch_norm_eval(h, w, b, buffers[f"{i}.running_mean"], buffers[f"{i}.running_var"], o["eps"])
            elif kind == "flatten":
                h = h.reshape(h.shape[0], -1)
            elif kind == "dropout":
                pass  # evaluation mode: the identity
            elif kind == "linear":
                h = h @ w.T + (b if b is not None else 0.0)
            elif kind == "layernorm":
                mu = jnp.mean(h, axis=-1, keepdims=True)
                var = jnp.mean((h - mu) ** 2, axis=-1, keepdims=True)
                h = (h - mu) / jnp.sqrt(var + EPS)
                if w is not None:
                    h = h * w + b
            else:
                h = ACT[kind](h)
        return h

    return forward


# --------------------------------------------------------------------------------------------------
# Losses (PyTorch conventions), as in make_golden.py.
# --------------------------------------------------------------------------------------------------


def per_example_losses(loss, z, y):
    if loss == "cross_entropy":
        logp = jax.nn.log_softmax(z, axis=-1)
        return -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]
    if loss == "mse":
        return jnp.sum((z - y) ** 2, axis=-1)
    if loss == "logistic":
        return jnp.sum(jnp.logaddexp(z, 0.0) - y * z, axis=-1)
    raise ValueError(loss)


def normaliser(loss, reduction, batch, k):
    if reduction == "sum":
        return 1.0
    return float(batch * k) if loss == "mse" else float(batch)


# --------------------------------------------------------------------------------------------------
# Cases: every layer kind at least once; strides, padding, dilation, groups; batches 3 and 4.
# --------------------------------------------------------------------------------------------------

CASES = [
    dict(
        name="a_conv2d_bn_pools_ce_mean",
        input=[2, 7, 6],
        arch="seq:2x7x6:conv2d(4,3x2,stride=2x1,padding=1,dilation=2x1,groups=2)-batchnorm2d-relu-maxpool2d(2,stride=1,padding=1)-conv2d(3,2,bias=false)-tanh-avgpool2d(2,stride=1,padding=1,count_include_pad=false)-adaptiveavgpool2d(1)-flatten-dropout(0.3)-linear(5)-batchnorm1d-gelu-linear(3)",
        layers=[
            ("conv2d", dict(cin=2, cout=4, k=[3, 2], s=[2, 1], p=[1, 1], d=[2, 1], g=2, bias=True)),
            ("bn2d", dict(c=4, eps=EPS)),
            ("relu", {}),
            ("maxpool2d", dict(k=[2, 2], s=[1, 1], p=[1, 1], d=[1, 1])),
            ("conv2d", dict(cin=4, cout=3, k=[2, 2], s=[1, 1], p=[0, 0], d=[1, 1], g=1, bias=False)),
            ("tanh", {}),
            ("avgpool2d", dict(k=[2, 2], s=[1, 1], p=[1, 1], count_include_pad=False)),
            ("adaptiveavgpool2d_1", {}),
            ("flatten", {}),
            ("dropout", {}),
            ("linear", dict(**{"in": 3}, out=5, bias=True)),
            ("bn1d", dict(c=5, eps=EPS)),
            ("gelu", {}),
            ("linear", dict(**{"in": 5}, out=3, bias=True)),
        ],
        loss="cross_entropy",
        reduction="mean",
        batch=4,
        seed=3001,
    ),
    dict(
        name="b_conv1d_pools_ln_mse_sum",
        input=[2, 12],
        arch="seq:2x12:conv1d(4,3,stride=2,padding=1,groups=2)-softplus-maxpool1d(2)-conv1d(3,2,dilation=2)-sigmoid-avgpool1d(2,stride=1,padding=1)-batchnorm1d-flatten-layernorm-linear(2)",
        layers=[
            ("conv1d", dict(cin=2, cout=4, k=[3], s=[2], p=[1], d=[1], g=2, bias=True)),
            ("softplus", {}),
            ("maxpool1d", dict(k=[2], s=[2], p=[0], d=[1])),
            ("conv1d", dict(cin=4, cout=3, k=[2], s=[1], p=[0], d=[2], g=1, bias=True)),
            ("sigmoid", {}),
            ("avgpool1d", dict(k=[2], s=[1], p=[1], count_include_pad=True)),
            ("bn1d", dict(c=3, eps=EPS)),
            ("flatten", {}),
            ("layernorm", dict(c=6)),
            ("linear", dict(**{"in": 6}, out=2, bias=True)),
        ],
        loss="mse",
        reduction="sum",
        batch=3,
        seed=3002,
    ),
    dict(
        name="c_lenet_like_relu_ce_sum",
        input=[1, 10, 10],
        arch="seq:1x10x10:conv2d(3,3,padding=1)-relu-maxpool2d(2)-conv2d(4,3)-relu-maxpool2d(3,stride=1)-flatten-linear(3)",
        layers=[
            ("conv2d", dict(cin=1, cout=3, k=[3, 3], s=[1, 1], p=[1, 1], d=[1, 1], g=1, bias=True)),
            ("relu", {}),
            ("maxpool2d", dict(k=[2, 2], s=[2, 2], p=[0, 0], d=[1, 1])),
            ("conv2d", dict(cin=3, cout=4, k=[3, 3], s=[1, 1], p=[0, 0], d=[1, 1], g=1, bias=True)),
            ("relu", {}),
            ("maxpool2d", dict(k=[3, 3], s=[1, 1], p=[0, 0], d=[1, 1])),
            ("flatten", {}),
            ("linear", dict(**{"in": 4}, out=3, bias=True)),
        ],
        loss="cross_entropy",
        reduction="sum",
        batch=3,
        seed=3003,
    ),
    dict(
        name="d_depthwise_avg_logistic_mean",
        input=[3, 5, 5],
        arch="seq:3x5x5:conv2d(3,3,stride=2,padding=2,groups=3)-softplus-avgpool2d(2)-flatten-linear(1)",
        layers=[
            ("conv2d", dict(cin=3, cout=3, k=[3, 3], s=[2, 2], p=[2, 2], d=[1, 1], g=3, bias=True)),
            ("softplus", {}),
            ("avgpool2d", dict(k=[2, 2], s=[2, 2], p=[0, 0], count_include_pad=True)),
            ("flatten", {}),
            ("linear", dict(**{"in": 12}, out=1, bias=True)),
        ],
        loss="logistic",
        reduction="mean",
        batch=4,
        seed=3004,
    ),
]


def layout(layers):
    names, shapes = [], []
    for i, (kind, o) in enumerate(layers):
        for suffix, s in param_shapes(kind, o):
            names.append(f"{i}.{suffix}")
            shapes.append(s)
    return names, shapes


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def kink_margin(taps):
    """Smallest distance of a ReLU input from 0 and half the smallest nonzero gap between the largest
    and second-largest value of a max-pool window (numpy, from explicit windows)."""
    m = math.inf
    for kind, o, h in taps:
        h = np.asarray(h)
        if kind == "relu":
            m = min(m, float(np.min(np.abs(h))))
        if kind in ("maxpool1d", "maxpool2d"):
            x = h if h.ndim == 4 else h[:, :, None, :]
            k = o["k"] if len(o["k"]) == 2 else [1] + o["k"]
            s = o["s"] if len(o["s"]) == 2 else [1] + o["s"]
            p = o["p"] if len(o["p"]) == 2 else [0] + o["p"]
            d = o["d"] if len(o["d"]) == 2 else [1] + o["d"]
            xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=-np.inf)
            ho = (xp.shape[2] - d[0] * (k[0] - 1) - 1) // s[0] + 1
            wo = (xp.shape[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
            for a in range(ho):
                for b in range(wo):
                    win = xp[:, :, a * s[0] : a * s[0] + d[0] * (k[0] - 1) + 1 : d[0], b * s[1] : b * s[1] + d[1] * (k[1] - 1) + 1 : d[1]]
                    top = np.sort(win.reshape(win.shape[0], win.shape[1], -1), axis=-1)
                    gap = top[..., -1] - top[..., -2]
                    # Exact ties come from inputs constant nearby (ReLU's zeros), where the choice
                    # does not change any derivative; near ties are what differences cannot cross.
                    gap = gap[gap > 0]
                    if gap.size:
                        m = min(m, float(np.min(gap)) / 2.0)
    return m


def make_case(c):
    name, layers, input_shape = c["name"], c["layers"], c["input"]
    loss, reduction, batch = c["loss"], c["reduction"], c["batch"]
    rng = np.random.default_rng(c["seed"])
    names, shapes = layout(layers)
    # Parameters: weights N(0, 1/fan_in), biases N(0, 0.1^2); norm gains 1 + N(0, 0.2^2).
    params = []
    for n, s in zip(names, shapes):
        i = int(n.split(".")[0])
        kind = layers[i][0]
        if kind in ("bn1d", "bn2d", "layernorm") and n.endswith("weight"):
            params.append(1.0 + rng.normal(0.0, 0.2, size=s))
        elif n.endswith("weight"):
            params.append(rng.normal(0.0, 1.0 / math.sqrt(int(np.prod(s[1:]))), size=s))
        else:
            params.append(rng.normal(0.0, 0.1, size=s))
    # Batch-norm running statistics (evaluation mode): means N(0, 0.3^2), variances 0.5 + |N(0, 1)|.
    buffers = {}
    for i, (kind, o) in enumerate(layers):
        if kind in ("bn1d", "bn2d"):
            buffers[f"{i}.running_mean"] = rng.normal(0.0, 0.3, size=o["c"])
            buffers[f"{i}.running_var"] = 0.5 + np.abs(rng.normal(0.0, 1.0, size=o["c"]))
    buffers_j = {k: jnp.asarray(v) for k, v in buffers.items()}
    theta_np = np.concatenate([p.reshape(-1) for p in params])
    theta = jnp.asarray(theta_np)
    n_params = theta_np.shape[0]
    forward_full = make_forward(layers, names, shapes, buffers_j)
    d0 = int(np.prod(input_shape))

    def forward(th, xx):
        return forward_full(th, xx, input_shape)

    resamples = 0
    while True:
        x_np = rng.normal(0.0, 1.0, size=(batch, d0))
        taps = []
        forward_full(theta, jnp.asarray(x_np), input_shape, taps)
        margin = kink_margin(taps)
        if margin > KINK_MARGIN:
            break
        resamples += 1
        assert resamples < 10000
    x = jnp.asarray(x_np)
    k = int(forward(theta, x).shape[1])
    if loss == "cross_entropy":
        y_np = rng.integers(0, k, size=batch)
        y = jnp.asarray(y_np, dtype=jnp.int32)
    elif loss == "mse":
        y_np = rng.normal(0.0, 1.0, size=(batch, k))
        y = jnp.asarray(y_np)
    else:
        y_np = rng.integers(0, 2, size=(batch, 1)).astype(np.float64)
        y = jnp.asarray(y_np)
    v_np = rng.normal(0.0, 1.0, size=n_params)
    v = jnp.asarray(v_np)
    norm = normaliser(loss, reduction, batch, k)

    def loss_of_theta(th):
        return jnp.sum(per_example_losses(loss, forward(th, x), y)) / norm

    def loss_of_logits(z):
        return jnp.sum(per_example_losses(loss, z, y)) / norm

    logits = forward(theta, x)
    loss_value = loss_of_theta(theta)
    grad_fn = jax.grad(loss_of_theta)
    gradient = grad_fn(theta)
    hvp = jax.jvp(grad_fn, (theta,), (v,))[1]
    z0, j_lin = jax.linearize(lambda th: forward(th, x), theta)
    hz_jv = jax.jvp(jax.grad(loss_of_logits), (z0,), (j_lin(v),))[1]
    (ggn_vp,) = jax.vjp(lambda th: forward(th, x), theta)[1](hz_jv)

    def single_loss(th, xi, yi):
        return jnp.sum(per_example_losses(loss, forward(th, xi[None, :]), yi[None, ...])) / norm

    per_example = jax.vmap(jax.grad(single_loss), in_axes=(None, 0, 0))(theta, x, y)
    input_jac = jax.vmap(jax.jacrev(lambda xi: forward(theta, xi[None, :])[0]))(x)

    # Cross-checks by second methods.
    e = rel_err(hvp, (grad_fn(theta + 1e-5 * v) - grad_fn(theta - 1e-5 * v)) / 2e-5)
    assert e < 1e-6, (name, "hvp vs differences", e)
    e = rel_err(hvp, jax.hessian(loss_of_theta)(theta) @ v)
    assert e < 1e-12, (name, "hvp vs hessian", e)
    e = rel_err(jnp.sum(per_example, axis=0), gradient)
    assert e < 1e-12, (name, "per-example sum", e)
    jac = jax.jacfwd(lambda th: forward(th, x))(theta).reshape(batch * k, n_params)
    hz = jax.hessian(loss_of_logits)(z0).reshape(batch * k, batch * k)
    e = rel_err(ggn_vp, jac.T @ (hz @ (jac @ v)))
    assert e < 1e-12, (name, "ggn vs explicit", e)
    full = jax.jacfwd(lambda xx: forward(theta, xx))(x)
    e = rel_err(input_jac, jnp.stack([full[i, :, i, :] for i in range(batch)]))
    assert e < 1e-12, (name, "input jacobian", e)
    for arr in (logits, gradient, hvp, ggn_vp, per_example, input_jac):
        assert bool(jnp.all(jnp.isfinite(arr)))
    print(f"{name:32s} B={batch} P={n_params:4d} K={k} loss={float(loss_value):.12g} margin={margin:.3g} resamples={resamples}")
    return {
        "name": name,
        "arch": c["arch"],
        "input_shape": input_shape,
        "layers": [[kind, o] for kind, o in layers],
        "loss": loss,
        "reduction": reduction,
        "batch_size": batch,
        "num_params": n_params,
        "seed": c["seed"],
        "kink_margin": margin if math.isfinite(margin) else None,
        "param_names": names,
        "param_shapes": {n: list(s) for n, s in zip(names, shapes)},
        "params": {n: p.tolist() for n, p in zip(names, params)},
        "buffers": {n: b.tolist() for n, b in buffers.items()},
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
    }


def dumps_readable(doc):
    lines = ["{"]
    for key in ("generator", "versions", "dtype"):
        lines.append(f" {json.dumps(key)}: {json.dumps(doc[key])},")
    lines.append(' "cases": [')
    for ci, case in enumerate(doc["cases"]):
        lines.append("  {")
        items = list(case.items())
        for i, (key, val) in enumerate(items):
            lines.append(f"   {json.dumps(key)}: {json.dumps(val)}" + ("," if i < len(items) - 1 else ""))
        lines.append("  }" + ("," if ci < len(doc["cases"]) - 1 else ""))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    doc = {
        "generator": "tests/golden/make_golden_cnn.py",
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "numpy": np.__version__,
        },
        "dtype": "float64",
        "cases": [make_case(c) for c in CASES],
    }
    with open(OUT, "w") as f:
        f.write(dumps_readable(doc))
    with open(OUT) as f:
        assert json.load(f) == doc
    print(f"wrote {os.path.relpath(OUT)} ({os.path.getsize(OUT)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
