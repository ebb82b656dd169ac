#!/usr/bin/env python3
"""A PyTorch-written safetensors checkpoint fixture for sgdlab's loader.

Writes (next to this script):
  torch_sequential.safetensors            state_dict of nn.Sequential(Linear(4,5), ReLU, Linear(5,5),
                                          ReLU, Linear(5,3)) in float32, names 0.weight ... 4.bias
  torch_sequential.json                   arch, versions, a fixed input x [3,4] and the model's
                                          float32 logits on it
  torch_sequential_bad_shape.safetensors  the same tensors but 2.weight has shape [5,4] (error path)

Run (from the repository root, with the reference venv, see tests/golden/README.md):
    $VENV/bin/python tests/golden/make_torch_checkpoint.py
"""

import json
import os
import platform
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation noise on import

import safetensors  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GOOD = os.path.join(HERE, "torch_sequential.safetensors")
BAD = os.path.join(HERE, "torch_sequential_bad_shape.safetensors")
META = os.path.join(HERE, "torch_sequential.json")

# A fixed input, written out so it does not depend on torch's RNG; every value is exact in float32.
X = [
    [0.5, -1.25, 2.0, 0.75],
    [-0.375, 0.125, -1.5, 1.0],
    [1.625, 0.25, -0.625, -2.25],
]


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 3))
    model = model.float().eval()
    sd = {k: t.detach().contiguous() for k, t in model.state_dict().items()}
    names = list(sd.keys())
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"], names
    assert all(t.dtype == torch.float32 for t in sd.values())

    x = torch.tensor(X, dtype=torch.float32)
    with torch.no_grad():
        logits = model(x)
        # The same forward pass in float64 from the float32 weights (for f64 engines).
        logits_f64 = model.double()(x.double())
        model.float()
    assert logits.dtype == torch.float32 and logits.shape == (3, 3)
    # No hidden pre-activation near the ReLU kink, so an f32 engine cannot flip a unit on/off.
    with torch.no_grad():
        a1 = model[0](x)
        a2 = model[2](model[1](a1))
    margin = min(a1.abs().min().item(), a2.abs().min().item())
    assert margin > 1e-3, margin

    save_file(sd, GOOD, metadata={"format": "pt"})

    bad = dict(sd)
    bad["2.weight"] = sd["2.weight"][:, :4].contiguous()  # [5,4] instead of [5,5]
    save_file(bad, BAD, metadata={"format": "pt"})

    doc = {
        "generator": "tests/golden/make_torch_checkpoint.py",
        "arch": "mlp:4-5-5-3:relu",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "safetensors": safetensors.__version__,
        },
        "dtype": "float32",
        "param_names": names,
        "param_shapes": {k: list(t.shape) for k, t in sd.items()},
        "x": X,
        # float32 values widened to Python floats (exact; parse as f64 and cast to f32 losslessly).
        "logits": logits.tolist(),
        "logits_f64": logits_f64.tolist(),
        "bad_shape_file": os.path.basename(BAD),
        "bad_shape_param": "2.weight",
        "bad_shape_shape": [5, 4],
    }
    with open(META, "w") as f:
        # One line per key (compact values).
        body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items())
        f.write("{\n" + body + "\n}\n")

    # Load-back checks.
    back = load_file(GOOD)
    assert list(back.keys()) == sorted(names) or set(back.keys()) == set(names)
    for k in names:
        assert torch.equal(back[k], sd[k]), k
    fresh = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 3))
    fresh.load_state_dict(back)
    with torch.no_grad():
        assert torch.equal(fresh(x), logits)
    with open(META) as f:
        meta = json.load(f)
    assert torch.equal(torch.tensor(meta["logits"], dtype=torch.float32), logits)
    badback = load_file(BAD)
    assert list(badback["2.weight"].shape) == [5, 4]
    try:
        fresh.load_state_dict(badback)
    except RuntimeError:
        pass
    else:
        raise AssertionError("bad-shape checkpoint loaded without error")

    for p in (GOOD, BAD, META):
        print(f"wrote {os.path.relpath(p)} ({os.path.getsize(p)} bytes)")
    print("logits:", logits.tolist())
    print(f"min |hidden pre-activation|: {margin:.4g}")


if __name__ == "__main__":
    main()
