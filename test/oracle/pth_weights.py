"""PyTorch side of test/weights.test.ts: state dicts written by torch.save, and the logits PyTorch gives.

  pth_weights.py make --dir D --size S
Writes into D (and prints a JSON manifest):
  inception_aux.pth, xception.pth  state dicts at 1000 classes (torchvision's Inception V3, the timm-named
                                   Xception of xception.py), BatchNorm calibrated, with <name>.input.safetensors
                                   and <name>.logits.safetensors (eval logits of 2 images, S x S)
  inception_noaux.pth              Inception V3 without the aux head (the same weights, so the same logits)
  xception_2d.pth                  pointwise weights stored 2-D [out, in], as old Xception files do
  xception_noncontig.pth           transposed and permuted views, and two tensors sharing one storage
  xception_f16.pth, _bf16.pth      in half and bfloat16; xception_f16.expected.safetensors (and bf16) hold
                                   some of the rounded values in float32
  xception_nested.pth              a timm-style checkpoint {'state_dict': ..., 'epoch', 'arch', 'optimizer', ...}
  xception_module.pth              {'model': {'module.<name>': ...}}, DataParallel's names
  legacy.pth                       the pre-1.6 format (_use_new_zipfile_serialization=False)
  namespace.pth                    a checkpoint that also pickles an argparse.Namespace
  torchscript.pt                   a TorchScript archive (torch.jit.save)
  tiny.pth                         small tensors of every storage type, some non-contiguous; the manifest's
                                   "tiny" holds each one's dtype, shape and row-major bytes (hex);
                                   tiny.data.pkl is its pickle alone
"""
import argparse
import collections
import json
import os
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from parity import build, calibrate  # noqa: E402


def reference(name, model, options, directory, size, seed):
    """Builds, calibrates and saves one model; writes its input and eval logits."""
    torch.manual_seed(seed)
    net = build(model, options)
    calibrate(net, size, 2)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        logits = net(x)
    torch.save(net.state_dict(), os.path.join(directory, f"{name}.pth"))
    safetensors_io.save(os.path.join(directory, f"{name}.input.safetensors"), {"x": x})
    safetensors_io.save(os.path.join(directory, f"{name}.logits.safetensors"), {"logits": logits})
    return net.state_dict()


def noncontiguous(state):
    """The same values, stored as views a state dict may hold: transposed, permuted, sharing a storage."""
    out = collections.OrderedDict(state)
    fc = state["fc.weight"]
    out["fc.weight"] = fc.t().contiguous().t()
    conv = state["conv1.weight"]
    out["conv1.weight"] = conv.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    mean, var = state["bn1.running_mean"], state["bn1.running_var"]
    shared = torch.cat([var, mean])
    out["bn1.running_mean"] = shared[var.numel():]
    out["bn1.running_var"] = shared[: var.numel()]
    assert not out["fc.weight"].is_contiguous() and not out["conv1.weight"].is_contiguous()
    assert out["bn1.running_mean"].storage_offset() == var.numel()
    return out


def tiny():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(4, 6, generator=g)
    tensors = collections.OrderedDict()
    tensors["f32"] = base
    tensors["f32.transposed"] = base.t()
    tensors["f32.sliced"] = base[1:3, ::2]
    tensors["f64"] = base.double()[:, 1]
    tensors["f16"] = base.half()
    tensors["bf16"] = base.bfloat16().t()
    tensors["i64.scalar"] = torch.tensor(7)
    tensors["i32"] = torch.arange(-3, 3, dtype=torch.int32)
    tensors["i16"] = torch.arange(-4, 4, dtype=torch.int16).reshape(2, 4).t()
    tensors["i8"] = torch.arange(-2, 2, dtype=torch.int8)
    tensors["u8"] = torch.arange(250, 256, dtype=torch.uint8)
    tensors["bool"] = torch.tensor([True, False, True])
    tensors["empty"] = torch.zeros(0, 3)
    names = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
             torch.bool: "BOOL"}
    expected = {}
    for k, v in tensors.items():
        c = v.contiguous()
        raw = c.reshape(-1).view(torch.uint8).numpy().tobytes() if c.numel() else b""
        expected[k] = {"dtype": names[v.dtype], "shape": list(v.shape), "hex": raw.hex()}
    return tensors, expected


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["make"])
    p.add_argument("--dir", required=True)
    p.add_argument("--size", type=int, default=80)
    a = p.parse_args()
    d = a.dir
    path = lambda name: os.path.join(d, name)  # noqa: E731

    inception = reference("inception_aux", "inception_v3", {"initWeights": False}, d, a.size, 1)
    torch.save(collections.OrderedDict((k, v) for k, v in inception.items() if not k.startswith("AuxLogits.")),
               path("inception_noaux.pth"))
    state = reference("xception", "xception", {}, d, a.size, 3)

    torch.save(collections.OrderedDict(
        (k, v.squeeze(-1).squeeze(-1) if k.endswith("pointwise.weight") else v) for k, v in state.items()
    ), path("xception_2d.pth"))
    torch.save(noncontiguous(state), path("xception_noncontig.pth"))
    for dtype, name in [(torch.float16, "f16"), (torch.bfloat16, "bf16")]:
        converted = collections.OrderedDict((k, v.to(dtype) if v.is_floating_point() else v) for k, v in state.items())
        torch.save(converted, path(f"xception_{name}.pth"))
        safetensors_io.save(path(f"xception_{name}.expected.safetensors"), {
            k: converted[k].float() for k in ["conv1.weight", "block3.rep.4.pointwise.weight", "fc.bias", "bn1.running_var"]
        })
    param = torch.nn.Parameter(torch.randn(3))
    optimizer = torch.optim.Adam([param], lr=0.01)
    param.sum().backward()
    optimizer.step()
    torch.save({"epoch": 3, "arch": "legacy_xception", "state_dict": state, "optimizer": optimizer.state_dict(),
                "metric": 0.25, "version": 2, "best": None, "tags": ("a", b"b", True)}, path("xception_nested.pth"))
    torch.save({"model": collections.OrderedDict((f"module.{k}", v) for k, v in state.items()), "epoch": 1},
               path("xception_module.pth"))

    few = collections.OrderedDict((k, state[k]) for k in ["conv1.weight", "bn1.weight"])
    torch.save(few, path("legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save({"state_dict": few, "args": argparse.Namespace(lr=0.1)}, path("namespace.pth"))
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path("torchscript.pt"))

    tensors, expected = tiny()
    torch.save(tensors, path("tiny.pth"))
    with zipfile.ZipFile(path("tiny.pth")) as z:
        pickle = [n for n in z.namelist() if n.endswith("/data.pkl")]
        with open(path("tiny.data.pkl"), "wb") as f:
            f.write(z.read(pickle[0]))
    print(json.dumps({"tiny": expected}))


if __name__ == "__main__":
    main()
