"""PyTorch side of bench/gpu.ts, on the same GPU: timm's legacy_xception or torchvision's
inception_v3 (with its aux head, loss + 0.4 aux loss), eager, fp16 autocast + GradScaler,
channels_last, cudnn.benchmark, torch.optim.Adam with its defaults.

  --mode step:  timed training steps on one fixed random batch.
  --mode epoch: --warmup steps on a random batch (cuDNN's algorithm search), then one timed epoch
                over --images random CIFAR-sized images through the reference notebook's pipeline
                (PIL transforms, DataLoader with 2 workers, its workers started before the clock).
Prints {"imagesPerSecond", "seconds", "images", "peakMemory"} (peak bytes allocated on the GPU)."""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

p = argparse.ArgumentParser()
p.add_argument("--model", choices=["xception", "inception_v3"], required=True)
p.add_argument("--mode", choices=["step", "epoch"], required=True)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--size", type=int, default=299)
p.add_argument("--warmup", type=int, default=15)
p.add_argument("--steps", type=int, default=30)
p.add_argument("--images", type=int, default=10000)
p.add_argument("--workers", type=int, default=2)
a = p.parse_args()

torch.backends.cudnn.benchmark = True
torch.manual_seed(0)
device = torch.device("cuda")


def make_model():
    if a.model == "xception":
        try:
            import timm

            return timm.create_model("legacy_xception", pretrained=False, num_classes=10)
        except Exception as error:  # an older or newer timm without it: the test oracle's copy
            print(f"timm legacy_xception unavailable ({error}); using test/oracle/xception.py", file=sys.stderr)
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "oracle"))
            from xception import Xception

            return Xception(num_classes=10)
    from torchvision.models import inception_v3

    return inception_v3(weights=None, num_classes=10, aux_logits=True, init_weights=True)


model = make_model().to(device).to(memory_format=torch.channels_last).train()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
scaler = torch.amp.GradScaler("cuda")


def step(x, y):
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16):
        out = model(x)
        if isinstance(out, tuple):  # torchvision's InceptionOutputs(logits, aux_logits)
            loss = F.cross_entropy(out[0], y) + 0.4 * F.cross_entropy(out[1], y)
        else:
            loss = F.cross_entropy(out, y)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss


torch.cuda.reset_peak_memory_stats()
x = torch.randn(a.batch, 3, a.size, a.size, device=device).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (a.batch,), device=device)
for _ in range(a.warmup):
    step(x, y)
torch.cuda.synchronize()
if a.mode == "step":
    start = time.perf_counter()
    for _ in range(a.steps):
        step(x, y)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    images = a.batch * a.steps
else:
    from notebook_pipeline import notebook_loader

    batches = iter(notebook_loader(a.images, a.batch, a.workers, drop_last=False))
    start = time.perf_counter()
    images = 0
    for x, y in batches:
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        step(x, y.to(device))
        images += x.shape[0]
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
print(json.dumps({"imagesPerSecond": images / seconds, "seconds": seconds, "images": images,
                  "peakMemory": torch.cuda.max_memory_allocated()}))
