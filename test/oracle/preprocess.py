"""Reference preprocessing with torchvision's tensor transforms, for the data-pipeline parity tests.

  preprocess.py --input I --out O --resize R --eval-resize E --crop C [--mean m m m --std s s s]
I holds `images` (uint8 [N, 3, H, W]), `offsets` (int32 [N, 2]: top, left) and `flips` (uint8 [N]).
O gets `eval` (Resize(E) -> CenterCrop(C) -> to float -> Normalize) and `train` (Resize(R) ->
crop at the given offsets -> hflip where flips -> to float -> Normalize), both float32 [N, 3, C, C].
"""
import argparse
import os
import sys

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--input", required=True)
p.add_argument("--out", required=True)
p.add_argument("--resize", type=int, required=True)
p.add_argument("--eval-resize", type=int, required=True)
p.add_argument("--crop", type=int, required=True)
p.add_argument("--mean", type=float, nargs=3, default=[0.485, 0.456, 0.406])
p.add_argument("--std", type=float, nargs=3, default=[0.229, 0.224, 0.225])
a = p.parse_args()

data = safetensors_io.load(a.input)
images, offsets, flips = data["images"], data["offsets"], data["flips"]
to_float = T.ConvertImageDtype(torch.float32)
normalize = T.Normalize(a.mean, a.std)

evaluate = T.Compose([T.Resize(a.eval_resize, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(a.crop), to_float, normalize])
eval_out = torch.stack([evaluate(img) for img in images])

train_out = []
for img, (top, left), flip in zip(images, offsets.tolist(), flips.tolist()):
    x = F.resize(img, [a.resize], interpolation=T.InterpolationMode.BILINEAR)
    x = F.crop(x, top, left, a.crop, a.crop)
    if flip:
        x = F.hflip(x)
    train_out.append(normalize(to_float(x)))
safetensors_io.save(a.out, {"eval": eval_out, "train": torch.stack(train_out)})
