"""PyTorch side of bench/ddp.ts: data-parallel fp32 training on the CPU as PyTorch users run it.

torch.multiprocessing.spawn starts --world processes; each joins a Gloo process group
(init_process_group), runs torch.set_num_threads(--threads), wraps the model of
test/oracle/parity.py's build() in DistributedDataParallel (default 25 MB buckets) and trains it with
Adam on its share of each global batch: per-rank batches of --batch images cut from one in-memory
uint8 tensor [N, 3, H, W] of random pixels, scaled to [0, 1] and normalised with ImageNet's mean and
std in the step, as our Trainer's preprocessing does. --warmup untimed steps, then --steps timed ones.

Exposed communication per step: DDP waits for its all-reduces inside loss.backward() (the
reducer's final callback), so the part of the all-reduce that backward did not hide is
    mean time of backward with DDP's all-reduce  -  mean time of backward under model.no_sync()
(no all-reduce at all), the latter measured over --probe-steps extra steps after the timed ones
(forward + backward only, gradients dropped, no optimizer step). Both terms are noisy on a busy
machine; the difference can come out slightly negative when nothing is exposed.

With --world 1 it is a single-process training loop as PyTorch users write it: no process group, no
DDP, a shuffling DataLoader (batch --batch, no workers) over a TensorDataset of the in-memory uint8
images, normalised in the step; the exposed communication is 0.

Prints one JSON line: {"imagesPerSecond", "seconds", "steps", "images", "exposedCommunicationSeconds"
(per step, mean over ranks), "backwardSeconds", "noSyncBackwardSeconds" (per step, mean over ranks)}.
"""
import argparse
import json
import os
import socket
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "oracle"))
from parity import build  # noqa: E402

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
AUX_LOSS_WEIGHT = 0.4  # our Trainer's default auxLossWeight (torchvision's training recipe)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loss_of(out, y):
    if isinstance(out, tuple):  # Inception's InceptionOutputs(logits, aux) in training mode
        return F.cross_entropy(out[0], y) + AUX_LOSS_WEIGHT * F.cross_entropy(out[1], y)
    return F.cross_entropy(out, y)


def worker(rank, a, port, out_dir):
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=a.world)
    torch.manual_seed(0)
    net = build(a.model, {"numClasses": 10, "auxLogits": a.aux})
    net.train()
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = torch.nn.parallel.DistributedDataParallel(net)  # broadcasts rank 0's weights; 25 MB buckets
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    global_batch = a.batch * a.world
    total = a.warmup + a.steps + a.probe_steps
    # The same images on every rank (one seed); each rank takes its slice of each global batch.
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (total * global_batch, 3, a.size, a.size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (total * global_batch,), generator=g)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)

    def batch(step):
        begin = step * global_batch + rank * a.batch
        x = (images[begin:begin + a.batch].float() / 255 - mean) / std
        if a.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels[begin:begin + a.batch]

    backward = 0.0
    started = None
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            started = time.perf_counter()
        x, y = batch(step)
        loss = loss_of(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        t = time.perf_counter()
        loss.backward()  # returns once DDP's all-reduces are done
        if step >= a.warmup:
            backward += time.perf_counter() - t
        optimizer.step()
    seconds = time.perf_counter() - (started if started is not None else time.perf_counter())

    # The same backward with no all-reduce: what backward alone costs here.
    no_sync = 0.0
    for step in range(a.warmup + a.steps, total):
        x, y = batch(step)
        with model.no_sync():
            loss = loss_of(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            t = time.perf_counter()
            loss.backward()
            no_sync += time.perf_counter() - t
    optimizer.zero_grad(set_to_none=True)
    dist.barrier()
    result = {
        "seconds": seconds,
        "backwardSeconds": backward / max(1, a.steps),
        "noSyncBackwardSeconds": no_sync / max(1, a.probe_steps),
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def single_process(a):
    """--world 1: the plain training loop, timed like the workers' (warm-up steps untimed)."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = build(a.model, {"numClasses": 10, "auxLogits": a.aux})
    net.train()
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    total = a.warmup + a.steps
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (total * a.batch, 3, a.size, a.size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (total * a.batch,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=a.batch, shuffle=True)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    started = time.perf_counter() if a.warmup == 0 else None
    for step, (xb, y) in enumerate(loader):
        x = (xb.float() / 255 - mean) / std
        if a.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = loss_of(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step + 1 == a.warmup:
            started = time.perf_counter()
    seconds = time.perf_counter() - started
    images_timed = a.steps * a.batch
    print(json.dumps({
        "imagesPerSecond": images_timed / seconds if seconds > 0 else 0,
        "seconds": seconds,
        "steps": a.steps,
        "images": images_timed,
        "exposedCommunicationSeconds": 0.0,
    }))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["xception", "inception_v3"], required=True)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=8, help="per rank")
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="per rank")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--probe-steps", type=int, default=5)
    p.add_argument("--aux", action="store_true", help="Inception V3's aux head (needs 299x299 images)")
    p.add_argument("--channels-last", action="store_true", help="model and batches in torch.channels_last (ours trains so by default)")
    a = p.parse_args()
    if a.world == 1:
        single_process(a)
        return
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(worker, args=(a, free_port(), out_dir), nprocs=a.world, join=True)
        ranks = [json.load(open(os.path.join(out_dir, f"rank{r}.json"))) for r in range(a.world)]
    seconds = ranks[0]["seconds"]
    images = a.steps * a.batch * a.world
    backward = sum(r["backwardSeconds"] for r in ranks) / a.world
    no_sync = sum(r["noSyncBackwardSeconds"] for r in ranks) / a.world
    print(json.dumps({
        "imagesPerSecond": images / seconds if seconds > 0 else 0,
        "seconds": seconds,
        "steps": a.steps,
        "images": images,
        "exposedCommunicationSeconds": backward - no_sync,
        "backwardSeconds": backward,
        "noSyncBackwardSeconds": no_sync,
    }))


if __name__ == "__main__":
    main()
