"""The reference notebook's input pipeline, for bench/data-pipeline.ts: a torchvision CIFAR10-style
dataset (uint8 HWC array -> PIL image per item) with PIL transforms
Resize(320) -> RandomCrop(299) -> RandomHorizontalFlip -> ToTensor -> Normalize, in a DataLoader
with 2 workers. Prints {"imagesPerSecond": ...} for `--batches` timed batches after one warm-up."""
import argparse
import json
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

p = argparse.ArgumentParser()
p.add_argument("--images", type=int, default=2048)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--batches", type=int, default=8)
p.add_argument("--workers", type=int, default=2)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--resize", type=int, default=320)
p.add_argument("--crop", type=int, default=299)
a = p.parse_args()
torch.set_num_threads(a.threads)


class Cifar10Like(Dataset):
    def __init__(self, data, labels, transform):
        self.data, self.labels, self.transform = data, labels, transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.data[i])), int(self.labels[i])


rng = np.random.default_rng(0)
data = rng.integers(0, 256, size=(a.images, 32, 32, 3), dtype=np.uint8)
labels = rng.integers(0, 10, size=a.images)
transform = T.Compose([
    T.Resize(a.resize), T.RandomCrop(a.crop), T.RandomHorizontalFlip(), T.ToTensor(),
    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
])
loader = DataLoader(Cifar10Like(data, labels, transform), batch_size=a.batch, shuffle=True, num_workers=a.workers,
                    drop_last=True, persistent_workers=a.workers > 0)
batches = iter(loader)
next(batches)  # warm-up: starts the workers
start = time.perf_counter()
n = 0
for _ in range(a.batches):
    x, y = next(batches)
    n += x.shape[0]
elapsed = time.perf_counter() - start
print(json.dumps({"imagesPerSecond": n / elapsed, "images": n, "seconds": elapsed}))
