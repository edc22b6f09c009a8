"""onnxruntime side of bench/models.ts, step 1: the ONNX model, exported from the very weights the PyTorch
side (bench/model_reference.py) times: torch.manual_seed(0), then the model of test/oracle/parity.py's
build() (torchvision's Inception V3 without the aux head, or test/oracle/xception.py), 10 classes, eval mode.

  onnx_export.py --model M --size S --batch N --out DIR [--opset 13] [--threads T]

Writes DIR/M.onnx (torch.onnx.export, a fixed input of N x 3 x S x S, constant folding, no dynamic axes),
DIR/M.input.f32 (a fixed random input, seed 1, raw little-endian float32) and DIR/M.logits.f32 (PyTorch's
eval logits of that input, the reference bench/onnx-side.ts checks onnxruntime against), and prints one
JSON object naming them. No onnx Python package is needed."""
import argparse
import json
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "oracle"))
from parity import build  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", choices=["xception", "inception_v3"], required=True)
p.add_argument("--size", type=int, default=96)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--out", required=True)
p.add_argument("--opset", type=int, choices=[13, 17], default=13)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)

# The same construction, in the same order after the same seed, as bench/model_reference.py: same weights.
torch.manual_seed(0)
net = build(a.model, {"numClasses": 10, "auxLogits": False})
net.eval()

torch.manual_seed(1)
x = torch.randn(a.batch, 3, a.size, a.size)
with torch.inference_mode():
    logits = net(x)

os.makedirs(a.out, exist_ok=True)
onnx_path = os.path.join(a.out, f"{a.model}.onnx")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # tracer notes on Python control flow that is constant for a fixed shape
    torch.onnx.export(
        net, (x,), onnx_path, opset_version=a.opset, input_names=["input"], output_names=["logits"],
        do_constant_folding=True, export_params=True,
    )
input_path = os.path.join(a.out, f"{a.model}.input.f32")
logits_path = os.path.join(a.out, f"{a.model}.logits.f32")
x.contiguous().numpy().astype("<f4").tofile(input_path)
logits.contiguous().numpy().astype("<f4").tofile(logits_path)
print(json.dumps({
    "onnx": onnx_path, "input": input_path, "logits": logits_path, "inputShape": list(x.shape),
    "logitsShape": list(logits.shape), "opset": a.opset, "torch": torch.__version__,
}))
