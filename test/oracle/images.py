"""Reference side of the image tests (test/images.test.ts, test/predict.test.ts), run by
/usr/bin/python3 with Pillow, PyTorch and torchvision.

  images.py make --dir D
        writes one small image of each kind PIL's loader meets (RGB, L, 1-bit, I;16, 16-bit RGB,
        RGBA, LA, P with and without transparency, CMYK JPEG, JPEG with an EXIF rotation, ...)
        into D, and for each, D/<name>.rgb: the bytes of Image.open(f).convert('RGB') (HWC);
        prints {"images": [{"file", "mode", "width", "height"}]}
  images.py transform --files F1,F2,... --size S --resize R --mean a,b,c --std a,b,c
                      --interpolation bilinear|bicubic --out O
        torchvision's evaluation transform, Compose([Resize(R), CenterCrop(S), ToTensor(),
        Normalize(mean, std)]), of each file opened as torchvision's ImageFolder loader does;
        writes the batch [N, 3, S, S] as float32 to O
  images.py predict --weights W --files F1,... (transform options as above) --classes N
                    --transform-input 0|1
        also runs torchvision's inception_v3 (eval mode) with the state dict W; prints
        {"probabilities": [[...N per image]]}
  images.py save-inception --out W --classes N --seed S --fc-scale X
        torch.save()s the state dict of a randomly initialised torchvision inception_v3 (aux head
        included), BatchNorm statistics measured on random pictures, fc.weight scaled by X
  images.py folder --dir D
        torchvision's ImageFolder(D) with the files our decoder reads (.jpg, .jpeg, .png):
        prints {"classes": [...], "samples": [[path, label], ...]}
  images.py rrc --width W --height H --draws N --seed S [--scale a,b] [--ratio a,b]
        N boxes of torchvision's RandomResizedCrop.get_params on a W x H image after
        torch.manual_seed(S): prints {"boxes": [[top, left, height, width], ...]}
  images.py resized-crop --files F1,... --boxes t,l,h,w;... --size S --interpolation X --out O
        torchvision's F.resized_crop(image, t, l, h, w, [S, S]) of each file (its box), PIL images;
        writes the RGB bytes (HWC) one image after another to O
Every command prints one JSON object on stdout.
"""
import argparse
import io
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image


def pil_loader(path):
    # torchvision.datasets.folder.pil_loader
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


def gradient(w, h, seed):
    """A smooth picture with some noise: edges and texture, as a photo has, in every channel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(x / 5.0 + seed)
    g = 127.5 + 127.5 * np.cos(y / 7.0 - seed)
    b = 255.0 * ((x + y) % 23) / 22.0
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 20, (h, w, 3))
    return np.clip(img, 0, 255).round().astype(np.uint8)


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def write_png16(path, array, colour_type):
    """A 16-bit PNG (Pillow writes 16-bit greyscale only): colour_type 2 RGB, 6 RGBA, 0 grey."""
    h, w = array.shape[:2]
    rows = array.astype(">u2").reshape(h, -1).tobytes()
    stride = len(rows) // h
    raw = b"".join(b"\x00" + rows[i * stride:(i + 1) * stride] for i in range(h))
    png = b"\x89PNG\r\n\x1a\n"
    png += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
    png += png_chunk(b"IDAT", zlib.compress(raw))
    png += png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def make(args):
    d = args.dir
    os.makedirs(d, exist_ok=True)
    w, h = 45, 31
    rgb = Image.fromarray(gradient(w, h, 1), "RGB")
    big = Image.fromarray(gradient(160, 120, 2), "RGB")  # for the resize: larger than the crops
    tall = Image.fromarray(gradient(70, 130, 3), "RGB")
    rng = np.random.default_rng(4)
    files = {}

    def save(name, img, **kw):
        img.save(os.path.join(d, name), **kw)
        files[name] = None

    save("rgb.png", rgb)
    save("big.png", big)
    save("tall.png", tall)
    save("rgb.jpg", rgb, quality=90)  # 4:2:0
    save("rgb444.jpg", rgb, quality=95, subsampling=0)
    save("big.jpg", big, quality=85)
    save("l.png", rgb.convert("L"))
    save("l.jpg", rgb.convert("L"), quality=90)
    save("1bit.png", rgb.convert("1"))
    save("rgba.png", Image.fromarray(np.dstack([gradient(w, h, 5), rng.integers(0, 256, (h, w), dtype=np.uint8)]), "RGBA"))
    save("la.png", Image.fromarray(np.dstack([gradient(w, h, 6)[..., 0], rng.integers(0, 256, (h, w), dtype=np.uint8)]), "LA"))
    save("p.png", rgb.quantize(colors=50))
    save("p-trns.png", rgb.quantize(colors=50), transparency=3)
    save("cmyk.jpg", rgb.convert("CMYK"), quality=95)
    save("cmyk-raw.jpg", Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "CMYK"), quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display; PIL's loader (and ours) ignore it
    save("exif-rotated.jpg", rgb, quality=90, exif=exif)
    # 16-bit greyscale, over the whole range: PIL opens it as I;16 and convert('RGB') clips to 255
    grey16 = (np.arange(w * h, dtype=np.uint32).reshape(h, w) * 47) % 65536
    grey16[0, :8] = [0, 1, 100, 254, 255, 256, 300, 65535]
    save("i16.png", Image.fromarray(grey16.astype(np.uint16), "I;16"))
    write_png16(os.path.join(d, "rgb16.png"), (gradient(w, h, 7).astype(np.uint32) * 257 + rng.integers(0, 257, (h, w, 3))), 2)
    files["rgb16.png"] = None
    write_png16(os.path.join(d, "rgba16.png"), np.dstack([gradient(w, h, 8).astype(np.uint32) * 257, rng.integers(0, 65536, (h, w))]), 6)
    files["rgba16.png"] = None

    out = []
    for name in files:
        path = os.path.join(d, name)
        with Image.open(path) as img:
            mode, (iw, ih) = img.mode, img.size
        pixels = np.asarray(pil_loader(path), dtype=np.uint8)
        with open(path + ".rgb", "wb") as f:
            f.write(pixels.tobytes())
        out.append({"file": name, "mode": mode, "width": iw, "height": ih})
    print(json.dumps({"images": out}))


def transform_of(args):
    from torchvision import transforms

    modes = {"bilinear": transforms.InterpolationMode.BILINEAR, "bicubic": transforms.InterpolationMode.BICUBIC}
    return transforms.Compose([
        transforms.Resize(args.resize, interpolation=modes[args.interpolation]),
        transforms.CenterCrop(args.size),
        transforms.ToTensor(),
        transforms.Normalize([float(v) for v in args.mean.split(",")], [float(v) for v in args.std.split(",")]),
    ])


def batch_of(args):
    import torch

    t = transform_of(args)
    return torch.stack([t(pil_loader(f)) for f in args.files.split(",")])


def transform(args):
    x = batch_of(args)
    with open(args.out, "wb") as f:
        f.write(x.numpy().astype("<f4").tobytes())
    print(json.dumps({"shape": list(x.shape)}))


def predict(args):
    import torch
    from torchvision.models import inception_v3

    torch.set_num_threads(int(os.environ.get("ORACLE_THREADS", "2")))
    model = inception_v3(weights=None, aux_logits=True, init_weights=False, num_classes=args.classes,
                         transform_input=bool(args.transform_input))
    model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    model.eval()
    with torch.no_grad():
        p = torch.softmax(model(batch_of(args)).double(), dim=1)
    print(json.dumps({"probabilities": p.tolist()}))


def save_inception(args):
    import torch
    from torchvision.models import inception_v3

    torch.manual_seed(args.seed)
    model = inception_v3(weights=None, aux_logits=True, init_weights=False, num_classes=args.classes)
    # BatchNorm statistics of real activations (a pass in training mode over smooth random
    # pictures), so that the features, and the top classes, depend on the image.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    pictures = torch.nn.functional.interpolate(torch.randn(16, 3, 8, 8), size=(96, 96), mode="bilinear", align_corners=False)
    aux, model.AuxLogits = model.AuxLogits, None  # (unused in eval mode; needs 299 in training mode)
    model.train()
    with torch.no_grad():
        model(pictures)
        model.AuxLogits = aux
        model.fc.weight.mul_(args.fc_scale)  # logits spread out enough for a stable top-5
    torch.save(model.state_dict(), args.out)
    print(json.dumps({"file": args.out}))


def folder(args):
    from torchvision.datasets import ImageFolder

    readable = lambda p: p.lower().endswith((".jpg", ".jpeg", ".png"))
    d = ImageFolder(args.dir, is_valid_file=readable)
    print(json.dumps({"classes": d.classes, "samples": [[p, int(c)] for p, c in d.samples]}))


def rrc(args):
    import torch
    from PIL import Image
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(args.seed)
    img = Image.new("RGB", (args.width, args.height))
    scale = tuple(float(v) for v in args.scale.split(","))
    ratio = tuple(float(v) for v in args.ratio.split(","))
    boxes = [list(RandomResizedCrop.get_params(img, scale, ratio)) for _ in range(args.draws)]
    print(json.dumps({"boxes": boxes}))


def resized_crop(args):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    modes = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}
    boxes = [[int(v) for v in b.split(",")] for b in args.boxes.split(";")]
    with open(args.out, "wb") as f:
        for file, (t, l, h, w) in zip(args.files.split(","), boxes):
            crop = F.resized_crop(pil_loader(file), t, l, h, w, [args.size, args.size], modes[args.interpolation])
            f.write(np.asarray(crop, dtype=np.uint8).tobytes())
    print(json.dumps({"images": len(boxes)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["make", "transform", "predict", "save-inception", "folder", "rrc", "resized-crop"])
    p.add_argument("--boxes")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--draws", type=int, default=1)
    p.add_argument("--scale", default="0.08,1.0")
    p.add_argument("--ratio", default="0.75,1.3333333333333333")
    p.add_argument("--dir")
    p.add_argument("--files")
    p.add_argument("--size", type=int)
    p.add_argument("--resize", type=int)
    p.add_argument("--mean", default="0.485,0.456,0.406")
    p.add_argument("--std", default="0.229,0.224,0.225")
    p.add_argument("--interpolation", default="bilinear")
    p.add_argument("--out")
    p.add_argument("--weights")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--transform-input", type=int, default=0)
    p.add_argument("--fc-scale", type=float, default=1.0)
    args = p.parse_args()
    {"make": make, "transform": transform, "predict": predict, "save-inception": save_inception,
     "folder": folder, "rrc": rrc, "resized-crop": resized_crop}[args.command](args)


if __name__ == "__main__":
    main()
