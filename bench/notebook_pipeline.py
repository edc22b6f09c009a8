"""The reference notebook's input pipeline, shared by the benchmarks' PyTorch sides: a torchvision
CIFAR10-style dataset (uint8 HWC array -> PIL image per item) with the intended training transform
Resize(320) -> RandomCrop(299) -> RandomHorizontalFlip -> ToTensor -> Normalize, in a DataLoader."""
import numpy as np
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset


class Cifar10Like(Dataset):
    def __init__(self, data, labels, transform):
        self.data, self.labels, self.transform = data, labels, transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.data[i])), int(self.labels[i])


def random_cifar(images, seed=0):
    """Random CIFAR-sized uint8 images [N, 32, 32, 3] and labels: the pipeline's cost does not depend on content."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(images, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, size=images)


def train_transform(resize=320, crop=299):
    return T.Compose([
        T.Resize(resize), T.RandomCrop(crop), T.RandomHorizontalFlip(), T.ToTensor(),
        T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])


def notebook_loader(images, batch, workers=2, resize=320, crop=299, drop_last=True):
    data, labels = random_cifar(images)
    return DataLoader(Cifar10Like(data, labels, train_transform(resize, crop)), batch_size=batch, shuffle=True,
                      num_workers=workers, drop_last=drop_last, persistent_workers=workers > 0)
