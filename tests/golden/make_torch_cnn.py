#!/usr/bin/env python3
"""PyTorch convolutional models as a user saves them, for sgdlab's --arch-file loader.

For each model writes (next to this script) `NAME.txt` (`str(model)`, what `print(model)` shows),
`NAME.safetensors` (`save_file(model.state_dict(), ...)`, float32), `NAME.json` (versions, the
input shape, a fixed input batch `x` as flattened rows, labels `y`, PyTorch's float32 `logits` and,
from the same weights in float64, `logits_f64`, both losses) and `NAME.grad.safetensors`: the
gradient of the mean cross-entropy by parameter name, `f32/NAME` from the float32 model and
`f64/NAME` from the float64 one. float32 values are written in their shortest decimal form.

  torch_lenet5          LeNet-5 (Conv2d/ReLU/MaxPool2d x 2, Flatten, Linear/ReLU x 2, Linear) on
                        the first 8 images of the MNIST test set (pixel / 255 in float32)
  torch_bn_dropout      Conv2d/BatchNorm2d/ReLU/MaxPool2d/Dropout/Conv2d(groups)/BatchNorm2d/ReLU/
                        AdaptiveAvgPool2d/Flatten/Dropout/Linear in evaluation mode, its running
                        statistics from 5 training-mode passes over random batches
  torch_bn_train        Conv2d/BatchNorm2d/Tanh/Flatten/Linear in *training* mode (batch
                        statistics): also the running statistics after that one forward pass

Run (from the repository root, with the reference venv, see tests/golden/README.md):
    $VENV/bin/python tests/golden/make_torch_cnn.py
"""

import gzip
import json
import os
import platform
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST = os.path.join(HERE, "..", "..", "..", "shared", "data", "mnist")


def mnist_images(n):
    """The first n test images as float32 pixel / 255 (the IDX loader's convention), and labels."""
    with gzip.open(os.path.join(MNIST, "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    assert int.from_bytes(raw[:4], "big") == 2051
    px = np.frombuffer(raw[16 : 16 + n * 784], dtype=np.uint8).reshape(n, 784)
    with gzip.open(os.path.join(MNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        lab = f.read()
    return (px.astype(np.float32) / np.float32(255.0)), np.frombuffer(lab[8 : 8 + n], dtype=np.uint8).astype(np.int64)


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )


def bn_dropout():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Conv2d(4, 8, 3, groups=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(8, 10),
    )


def bn_train():
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=2), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(), nn.Linear(27, 4))


def forward_backward(model, x, y):
    """One forward pass (in training mode: one update of the running statistics) and its backward."""
    model.zero_grad(set_to_none=True)
    z = model(x)
    loss = nn.functional.cross_entropy(z, y)
    loss.backward()
    return z.detach(), loss.item(), {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def f32_list(t):
    """float32 values as the shortest decimals that round back to them (compact, exact)."""
    return [float(str(np.float32(v))) for v in t.reshape(-1).tolist()]


def rows(t, f):
    return [f(r) for r in t.reshape(t.shape[0], -1)]


def write(name, make, model, x, y, input_shape, train=False):
    sd = {k: t.detach().clone().contiguous() for k, t in model.state_dict().items()}
    assert all(t.dtype in (torch.float32, torch.int64) for t in sd.values())
    txt, st, js, gs = (os.path.join(HERE, f"{name}.{ext}") for ext in ("txt", "safetensors", "json", "grad.safetensors"))
    with open(txt, "w") as f:
        f.write(str(model))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train(train)
    logits, loss32, g32 = forward_backward(model, x, y)
    # In training mode: the running statistics after that one pass.
    after = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    m64 = make().double()
    m64.load_state_dict({k: (v.double() if v.dtype == torch.float32 else v) for k, v in before.items()})
    m64.train(train)
    logits64, loss64, g64 = forward_backward(m64, x.double(), y)
    save_file(sd, st, metadata={"format": "pt"})
    back = load_file(st)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    doc = {
        "generator": "tests/golden/make_torch_cnn.py",
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "safetensors": safetensors.__version__, "numpy": np.__version__},
        "mode": "train" if train else "eval",
        "input_shape": input_shape,
        "state_dict": list(sd.keys()),
        "x": rows(x, f32_list),
        "y": y.tolist(),
        "logits": rows(logits, f32_list),
        "logits_f64": logits64.tolist(),
        "loss": loss32,
        "loss_f64": loss64,
        "gradient_file": os.path.basename(gs),
    }
    grads = {f"f32/{k}": v.contiguous() for k, v in g32.items()}
    grads.update({f"f64/{k}": v.contiguous() for k, v in g64.items()})
    save_file(grads, gs)
    if train:
        doc["running_after"] = {k: v.reshape(-1).tolist() for k, v in after.items()}
    with open(js, "w") as f:
        body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items())
        f.write("{\n" + body + "\n}\n")
    with open(js) as f:
        back_doc = json.load(f)
    assert torch.equal(torch.tensor(back_doc["logits"], dtype=torch.float32), logits)
    assert torch.equal(torch.tensor(back_doc["x"], dtype=torch.float32), x.reshape(x.shape[0], -1))
    for p in (txt, st, js, gs):
        print(f"wrote {os.path.relpath(p)} ({os.path.getsize(p)} bytes)")


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    imgs, labels = mnist_images(8)
    x = torch.tensor(imgs).reshape(8, 1, 28, 28)
    y = torch.tensor(labels)
    write("torch_lenet5", lenet5, lenet5(), x, y, [1, 28, 28])

    torch.manual_seed(1)
    m = bn_dropout()
    with torch.no_grad():  # running statistics from a few training-mode passes
        m.train()
        for _ in range(5):
            m(torch.randn(16, 1, 12, 12) * 1.5 + 0.3)
        for mod in m:
            if isinstance(mod, nn.BatchNorm2d):  # non-trivial affine parameters too
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)
    x = torch.randn(4, 1, 12, 12)
    y = torch.tensor([3, 1, 4, 1])
    write("torch_bn_dropout", bn_dropout, m, x, y, [1, 12, 12])

    torch.manual_seed(2)
    m = bn_train()
    with torch.no_grad():
        m[1].running_mean.normal_(0.0, 0.2)
        m[1].running_var.uniform_(0.5, 2.0)
        m[1].num_batches_tracked.fill_(3)
        m[1].weight.uniform_(0.5, 1.5)
        m[1].bias.uniform_(-0.3, 0.3)
    x = torch.randn(3, 2, 7, 7)
    y = torch.tensor([0, 3, 2])
    write("torch_bn_train", bn_train, m, x, y, [2, 7, 7], train=True)


if __name__ == "__main__":
    main()
