"""PyTorch's side of bench/folder.ts: torchvision's ImageFolder over the generated folder, with
timm's and torchvision's training transforms (RandomResizedCrop(size), RandomHorizontalFlip,
ToTensor, Normalize), in a shuffling DataLoader with one worker per core; one epoch iterated
(workers started inside the timed epoch, as each epoch of a training loop starts them).
Prints {"images", "seconds", "imagesPerSecond"}."""
import argparse
import json
import time

import torch
from torchvision import datasets, transforms

p = argparse.ArgumentParser()
p.add_argument("--dir", required=True)
p.add_argument("--size", type=int, default=299)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--workers", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(1)

t = transforms.Compose([
    transforms.RandomResizedCrop(a.size),
    transforms.RandomHorizontalFlip(),
    transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])
data = datasets.ImageFolder(a.dir, transform=t)
loader = torch.utils.data.DataLoader(data, batch_size=a.batch, shuffle=True, num_workers=a.workers, drop_last=True)
start = time.perf_counter()
n = 0
for x, y in loader:
    n += x.shape[0]
seconds = time.perf_counter() - start
print(json.dumps({"images": n, "seconds": seconds, "imagesPerSecond": n / seconds}))
