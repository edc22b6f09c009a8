"""PyTorch side of bench/models.ts: timed fp32 training steps (forward, cross-entropy, backward,
Adam) or eval forward passes on one fixed random batch, for torchvision's Inception V3 (no aux head)
or the Python Xception of test/oracle/. Prints {"imagesPerSecond", "seconds", "peakRssMb", "othersShare"}:
othersShare is the share of the CPUs other processes took meanwhile, as bench/interference.ts computes it."""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "oracle"))
from xception import Xception  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", choices=["xception", "inception_v3"], required=True)
p.add_argument("--mode", choices=["train", "infer"], required=True)
p.add_argument("--size", type=int, default=96)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--threads", type=int, required=True)
p.add_argument("--channels-last", action="store_true", help="model and batch in torch.channels_last (ours runs so)")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

if a.model == "xception":
    net = Xception(num_classes=10)
else:
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, num_classes=10, aux_logits=False, init_weights=True)
x = torch.randn(a.batch, 3, a.size, a.size)
y = torch.randint(0, 10, (a.batch,))
if a.channels_last:
    net = net.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
net.train(a.mode == "train")


def step():
    if a.mode == "train":
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    else:
        with torch.inference_mode():
            net(x)


def busy_seconds():
    """The machine's busy CPU time (all CPUs) and the wall clock, from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return None
    return (sum(fields) - fields[3] - fields[4]) / 100, time.time()


def own_cpu_seconds():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


before, cpu_before = busy_seconds(), own_cpu_seconds()
for _ in range(a.warmup):
    step()
start = time.perf_counter()
for _ in range(a.steps):
    step()
seconds = time.perf_counter() - start
after, cpu_after = busy_seconds(), own_cpu_seconds()
others = None
if before and after:
    capacity = (after[1] - before[1]) * os.cpu_count()
    others = max(0.0, after[0] - before[0] - (cpu_after - cpu_before)) / capacity if capacity > 0 else 0.0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"imagesPerSecond": a.batch * a.steps / seconds, "seconds": seconds, "peakRssMb": peak, "othersShare": others}))
