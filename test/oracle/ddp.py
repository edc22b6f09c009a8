"""PyTorch's own DistributedDataParallel (Gloo, 2 processes) on the batches our 2-rank training saw.

  ddp.py sampler --size N --world W --seed S --epoch E
        -> {"order": [...], "ranks": [[...], ...]}: the epoch's permutation and
           torch.utils.data.DistributedSampler's indices per rank, its generator seeded so that it
           draws the permutation our training draws (mix_seed below)
  ddp.py train --model M --options JSON --dir D --world W --batch B --lr LR --seed S --size H
        reads D/images.u8 ([N, 3, H, H] uint8), D/labels.u8 and D/initial.safetensors; runs W
        processes of DDP(model) with Adam over one epoch of DistributedSampler shards (global batch B,
        no augmentation), and writes rank 0's final state dict to D/python.safetensors;
        --freeze-backbone trains the classifier only, as torchvision's fine-tuning tutorial's feature
        extraction does (requires_grad off elsewhere, Adam over the rest), with the backbone's
        BatchNorm layers in eval mode
"""
import argparse
import json
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from parity import build  # noqa: E402

MASK = (1 << 64) - 1

# The classifier of each model: the new layers of torchvision's fine-tuning tutorial.
CLASSIFIER = {"xception": ["fc"], "inception_v3": ["fc", "AuxLogits.fc"]}


def mix_seed(seed, epoch, batch):
    """The seed of epoch `epoch`'s permutation in native/training.cpp (splitmix64 of the three)."""
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + (batch + 1) * 0x94D049BB133111EB) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def shards(size, world, seed, epoch):
    """DistributedSampler's indices for each rank, its permutation seeded with our epoch seed."""
    dataset = range(size)
    out = []
    for rank in range(world):
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=mix_seed(seed, epoch, -1) - epoch)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


def worker(rank, a, port):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=a.world)
    options = json.loads(a.options)
    net = build(a.model, options)
    net.load_state_dict(safetensors_io.load(os.path.join(a.dir, "initial.safetensors")))
    net.train()
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if a.freeze_backbone:
        for name, p in net.named_parameters():
            p.requires_grad_(any(name.startswith(m + ".") for m in CLASSIFIER[a.model]))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
    model = torch.nn.parallel.DistributedDataParallel(net)  # broadcast_buffers=True, 25 MB buckets
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=a.lr)
    raw = open(os.path.join(a.dir, "images.u8"), "rb").read()
    labels = torch.tensor(list(open(os.path.join(a.dir, "labels.u8"), "rb").read()), dtype=torch.long)
    n = labels.numel()
    images = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(n, 3, a.size, a.size)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    indices = torch.tensor(shards(n, a.world, a.seed, 0)[rank])
    per_rank = a.batch // a.world
    for begin in range(0, indices.numel() - 1, per_rank):
        batch = indices[begin:begin + per_rank]
        if batch.numel() < 2:
            break
        x = (images[batch].float() / 255 - mean) / std
        if a.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels[batch]
        out = model(x)
        if isinstance(out, tuple):  # Inception's InceptionOutputs(logits, aux)
            loss = F.cross_entropy(out[0], y) + 0.4 * F.cross_entropy(out[1], y)
        else:
            loss = F.cross_entropy(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if rank == 0:
        safetensors_io.save(os.path.join(a.dir, "python.safetensors"), {k: v.detach().contiguous() for k, v in net.state_dict().items()})
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["sampler", "train"])
    p.add_argument("--size", type=int)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epoch", type=int, default=0)
    p.add_argument("--model")
    p.add_argument("--options", default="{}")
    p.add_argument("--dir")
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--port", type=int)
    p.add_argument("--freeze-backbone", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    a = p.parse_args()
    if a.command == "sampler":
        g = torch.Generator()
        g.manual_seed(mix_seed(a.seed, a.epoch, -1))
        order = torch.randperm(a.size, generator=g).tolist()
        print(json.dumps({"order": order, "ranks": shards(a.size, a.world, a.seed, a.epoch)}))
        return
    mp.spawn(worker, args=(a, a.port), nprocs=a.world, join=True)
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    main()
