"""Reference side of the optimizer and loss-scaling tests: torch.optim.Adam/AdamW and PyTorch's
GradScaler, run on the CPU.

  optim.py adam   --input I --out O --options JSON
      I: p<i>, g<i>, m<i> (exp_avg), v<i> (exp_avg_sq); options: lr, betas, eps, weight_decay,
      adamw, steps (the state's step count before this step). O: p<i>, m<i>, v<i> after one step.
  optim.py scaler --input I --out O --options JSON
      I: p<i> and, for each step s, grads g<s>_<i> (already multiplied by the loss scale, may hold
      inf/NaN); options: steps, lr, init_scale, growth_factor, backoff_factor, growth_interval.
      Runs scaler.step(adam) + scaler.update() per step; O: final p<i>; stdout: the per-step
      trajectory [{scale, growth_tracker, stepped}].

With "device": "cuda" in the options everything runs on the GPU: Adam/AdamW with fused=True (the
kernels the training loop uses there) and torch.amp.GradScaler("cuda") with its CUDA kernels.

GradScaler: torch.amp.GradScaler("cpu") where PyTorch has CPU AMP kernels (2.3+). On older
PyTorch (Debian's 1.13) the class is CUDA-only: the oracle then runs torch.cuda.amp.GradScaler's own
code on the CPU, standing in only for its two CUDA kernels with their documented semantics.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


def make_adam(params, o):
    cls = torch.optim.AdamW if o.get("adamw") else torch.optim.Adam
    extra = {"fused": True} if o.get("device") == "cuda" else {}
    return cls(params, lr=o["lr"], betas=tuple(o.get("betas", (0.9, 0.999))), eps=o.get("eps", 1e-8),
               weight_decay=o.get("weight_decay", 0.0), **extra)


def non_finite_check_and_unscale_(grads, found_inf, inv_scale):
    for g in grads:
        if not torch.isfinite(g).all():
            found_inf.fill_(1.0)
        g.mul_(inv_scale)


def update_scale_(scale, growth_tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    if found_inf.item() != 0:
        scale.mul_(backoff_factor)
        growth_tracker.fill_(0)
    else:
        successful = growth_tracker.item() + 1
        if successful == growth_interval:
            grown = torch.tensor(scale.item() * growth_factor, dtype=torch.float32)
            if torch.isfinite(grown):
                scale.fill_(grown.item())
            growth_tracker.fill_(0)
        else:
            growth_tracker.fill_(successful)
    return scale


def make_scaler(o):
    kwargs = dict(init_scale=o["init_scale"], growth_factor=o["growth_factor"], backoff_factor=o["backoff_factor"],
                  growth_interval=o["growth_interval"])
    if o.get("device") == "cuda":
        return torch.amp.GradScaler("cuda", **kwargs)
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler") and hasattr(torch, "_amp_update_scale_"):
        try:
            scaler = torch.amp.GradScaler("cpu", **kwargs)
            scaler._lazy_init_scale_growth_tracker(torch.device("cpu"))
            return scaler
        except (TypeError, RuntimeError):
            pass
    from torch.cuda.amp import grad_scaler as gs

    torch._amp_foreach_non_finite_check_and_unscale_ = non_finite_check_and_unscale_
    torch._amp_update_scale_ = update_scale_

    class Replicator(gs._MultiDeviceReplicator):
        def __init__(self, master_tensor):
            self.master = master_tensor
            self._per_device_tensors = {}

    gs._MultiDeviceReplicator = Replicator
    # Its constructor disables itself without CUDA; let it build its real state.
    gs.amp_definitely_not_available = lambda: False
    scaler = gs.GradScaler(**kwargs)
    scaler._lazy_init_scale_growth_tracker(torch.device("cpu"))
    return scaler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["adam", "scaler"])
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--options", required=True)
    a = p.parse_args()
    o = json.loads(a.options)
    device = torch.device(o.get("device", "cpu"))
    t = {k: v.to(device) for k, v in safetensors_io.load(a.input).items()}
    n = len([k for k in t if k.startswith("p")])
    params = [torch.nn.Parameter(t[f"p{i}"].clone()) for i in range(n)]

    if a.command == "adam":
        opt = make_adam(params, o)
        for i, param in enumerate(params):
            param.grad = t[f"g{i}"].clone()
            if o.get("steps", 0) > 0:
                opt.state[param] = {"step": torch.tensor(float(o["steps"]), device=device if o.get("device") == "cuda" else "cpu"), "exp_avg": t[f"m{i}"].clone(),
                                    "exp_avg_sq": t[f"v{i}"].clone()}
        opt.step()
        out = {}
        for i, param in enumerate(params):
            out[f"p{i}"] = param.detach().cpu()
            out[f"m{i}"] = opt.state[param]["exp_avg"].cpu()
            out[f"v{i}"] = opt.state[param]["exp_avg_sq"].cpu()
        safetensors_io.save(a.out, out)
        print(json.dumps({"ok": True}))
    else:
        opt = make_adam(params, o)
        scaler = make_scaler(o)
        trajectory = []
        for s in range(o["steps"]):
            for i, param in enumerate(params):
                param.grad = t[f"g{s}_{i}"].clone()
            steps_before = opt.state[params[0]]["step"].item() if params[0] in opt.state else 0
            scaler.step(opt)
            steps_after = opt.state[params[0]]["step"].item() if params[0] in opt.state else 0
            scaler.update()
            trajectory.append({"scale": scaler.get_scale(), "growth_tracker": scaler._get_growth_tracker(),
                               "stepped": steps_after > steps_before})
        safetensors_io.save(a.out, {f"p{i}": param.detach().cpu() for i, param in enumerate(params)})
        print(json.dumps(trajectory))


if __name__ == "__main__":
    main()
