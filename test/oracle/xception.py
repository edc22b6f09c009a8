"""An independent PyTorch Xception, written from the paper (Chollet 2017, Figure 5) with the module
names of timm's `legacy_xception`. It is the reference the native Xception is checked against."""
import torch
from torch import nn


def intermediate(name):
    return {"none": nn.Identity(), "relu": nn.ReLU(), "elu": nn.ELU()}[name]


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 then pointwise 1x1, no biases; optional activation in between (Section 4.7)."""

    def __init__(self, cin, cout, activation="none"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.mid = intermediate(activation)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.mid(self.conv1(x)))


class Block(nn.Module):
    def __init__(self, cin, cout, reps, stride, start_with_relu, grow_first, activation, notebook):
        super().__init__()
        layers = []
        width = cin
        for i in range(reps):
            grows = (i == 0) if grow_first else (i == reps - 1)
            out = cout if grows else width
            if i > 0 or start_with_relu:
                # The block's first ReLU must leave its input intact for the skip branch.
                layers.append(nn.ReLU(inplace=i > 0))
            layers += [SeparableConv2d(width, out, activation), nn.BatchNorm2d(out)]
            width = out
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*layers)
        if cout != cin or stride != 1:
            self.skip = nn.Conv2d(cin, cout, 1, stride=stride, bias=notebook)
            self.skipbn = None if notebook else nn.BatchNorm2d(cout)
        else:
            self.skip = None

    def forward(self, x):
        shortcut = x
        if self.skip is not None:
            shortcut = self.skip(x)
            if self.skipbn is not None:
                shortcut = self.skipbn(shortcut)
        return self.rep(x) + shortcut


class Xception(nn.Module):
    def __init__(self, num_classes=1000, intermediate_activation="none", middle_flow_blocks=8, dropout=0.0,
                 variant="paper"):
        super().__init__()
        nb = variant == "notebook"
        a = intermediate_activation
        self.dropout = dropout
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 1 if nb else 0, bias=nb)
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, 1, 1 if nb else 0, bias=nb)
        self.bn2 = nn.BatchNorm2d(64)
        self.act2 = nn.ReLU(inplace=True)
        specs = [(64, 128, 2, 2, False, True), (128, 256, 2, 2, True, True), (256, 728, 2, 2, True, True)]
        specs += [(728, 728, 3, 1, True, True)] * middle_flow_blocks
        specs += [(728, 1024, 2, 2, True, False)]
        self.num_blocks = len(specs)
        for i, (cin, cout, reps, stride, swr, gf) in enumerate(specs, start=1):
            setattr(self, f"block{i}", Block(cin, cout, reps, stride, swr, gf, a, nb))
        self.conv3 = SeparableConv2d(1024, 1536, a)
        self.bn3 = nn.BatchNorm2d(1536)
        self.act3 = nn.ReLU(inplace=True)
        self.conv4 = SeparableConv2d(1536, 2048, a)
        self.bn4 = nn.BatchNorm2d(2048)
        self.act4 = nn.ReLU(inplace=True)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        for i in range(1, self.num_blocks + 1):
            x = getattr(self, f"block{i}")(x)
        x = self.act3(self.bn3(self.conv3(x)))
        x = self.act4(self.bn4(self.conv4(x)))
        x = torch.flatten(self.global_pool(x), 1)
        x = nn.functional.dropout(x, self.dropout, self.training)
        return self.fc(x)
