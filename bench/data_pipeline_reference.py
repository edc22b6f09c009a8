"""The reference notebook's input pipeline (bench/notebook_pipeline.py) for bench/data-pipeline.ts:
PIL transforms Resize(320) -> RandomCrop(299) -> RandomHorizontalFlip -> ToTensor -> Normalize in a
DataLoader with 2 workers. Prints {"imagesPerSecond": ...} for `--batches` timed batches after one warm-up."""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from notebook_pipeline import notebook_loader  # noqa: E402

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

loader = notebook_loader(a.images, a.batch, a.workers, a.resize, a.crop)
batches = iter(loader)
next(batches)  # warm-up: starts the workers
start = time.perf_counter()
n = 0
for _ in range(a.batches):
    x, y = next(batches)
    n += x.shape[0]
elapsed = time.perf_counter() - start
print(json.dumps({"imagesPerSecond": n / elapsed, "images": n, "seconds": elapsed}))
