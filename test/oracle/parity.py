"""Reference side of the parity tests, run by /usr/bin/python3 with PyTorch and torchvision.

  parity.py keys    --model M --options JSON                    -> {"keys": [...], "parameters": n}
  parity.py make    --model M --options JSON --seed S --size H --batch N --dir D
        builds the model, gives BatchNorm realistic running statistics, writes D/weights.safetensors,
        D/input.safetensors and D/logits.safetensors (eval-mode logits)
  parity.py forward --model M --options JSON --weights W --input I --out O [--expect E]
        loads W strictly (as load_state_dict does), writes eval logits of I to O; with --expect,
        also reports whether every loaded tensor equals the one in E bit for bit
  parity.py init    --model M --options JSON --weights W
        compares the standard deviation of each conv/linear weight in W (our initialisation) with a
        freshly initialised reference model
Every command prints one JSON object on stdout.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from xception import Xception  # noqa: E402

torch.set_num_threads(int(os.environ.get("ORACLE_THREADS", "2")))


def build(model, options):
    if model == "xception":
        return Xception(
            num_classes=options.get("numClasses", 1000),
            intermediate_activation=options.get("intermediateActivation", "none"),
            middle_flow_blocks=options.get("middleFlowBlocks", 8),
            dropout=options.get("dropout", 0.0),
            variant=options.get("variant", "paper"),
        )
    if model == "inception_v3":
        from torchvision.models import inception_v3

        return inception_v3(
            weights=None,
            num_classes=options.get("numClasses", 1000),
            aux_logits=options.get("auxLogits", True),
            transform_input=options.get("transformInput", False),
            dropout=options.get("dropout", 0.5),
            init_weights=options.get("initWeights", True),
        )
    raise SystemExit(f"unknown model {model}")


def calibrate(net, size, batch):
    """Run a few training-mode batches so BatchNorm statistics are those of real activations."""
    aux = getattr(net, "AuxLogits", None)
    if aux is not None:
        net.AuxLogits = None  # the aux head needs 299x299 input; its BN buffers are randomised below
        for m in aux.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(3)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(batch, 3, size, size))
    if aux is not None:
        net.AuxLogits = aux
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    net.eval()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["keys", "make", "forward", "init"])
    p.add_argument("--model", required=True)
    p.add_argument("--options", default="{}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--dir")
    p.add_argument("--weights")
    p.add_argument("--input")
    p.add_argument("--out")
    p.add_argument("--expect")
    a = p.parse_args()
    options = json.loads(a.options)
    torch.manual_seed(a.seed)
    net = build(a.model, options)

    if a.command == "keys":
        keys = list(net.state_dict().keys())
        params = sum(p.numel() for p in net.parameters() if p.requires_grad)
        print(json.dumps({"keys": keys, "parameters": params, "parameterTensors": len(list(net.parameters()))}))
    elif a.command == "make":
        calibrate(net, a.size, a.batch)
        x = torch.randn(a.batch, 3, a.size, a.size)
        with torch.no_grad():
            logits = net(x)
        safetensors_io.save(os.path.join(a.dir, "weights.safetensors"), net.state_dict(), {"format": "pt"})
        safetensors_io.save(os.path.join(a.dir, "input.safetensors"), {"x": x})
        safetensors_io.save(os.path.join(a.dir, "logits.safetensors"), {"logits": logits})
        print(json.dumps({"logitsShape": list(logits.shape)}))
    elif a.command == "forward":
        state = safetensors_io.load(a.weights)
        net.load_state_dict(state, strict=True)
        result = {}
        if a.expect:
            expected = safetensors_io.load(a.expect)
            differing = [k for k, v in net.state_dict().items() if not torch.equal(v, expected[k])]
            result["differing"] = differing
        net.eval()
        x = safetensors_io.load(a.input)["x"]
        with torch.no_grad():
            logits = net(x)
        safetensors_io.save(a.out, {"logits": logits})
        result["logitsShape"] = list(logits.shape)
        print(json.dumps(result))
    elif a.command == "init":
        ours = safetensors_io.load(a.weights)
        report = {}
        for name, module in net.named_modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                key = f"{name}.weight"
                report[key] = {"reference": module.weight.std().item(), "ours": ours[key].std().item(),
                               "numel": module.weight.numel()}
            elif isinstance(module, torch.nn.BatchNorm2d):
                for suffix in ("weight", "bias", "running_mean", "running_var"):
                    key = f"{name}.{suffix}"
                    if not torch.equal(getattr(module, suffix), ours[key]):
                        report[key] = {"mismatch": True}
        print(json.dumps(report))


if __name__ == "__main__":
    main()
