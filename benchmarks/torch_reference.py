"""Plain PyTorch peers of the seed models, as a user would write them without cnnzoo.

The same layers as SPEC §1-2 (HappyModel; the course's ResNet50 with the stride on the
first 1x1 of each convolutional block) so that throughput is compared on equal work. Used
by benchmarks/train_speed.py as the reference peer (b); parameter counts are checked
against the Keras models in tests/test_benchmarks.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, cin: int, filters: tuple[int, int, int], stride: int, project: bool):
        super().__init__()
        f1, f2, f3 = filters
        self.branch = nn.Sequential(
            nn.Conv2d(cin, f1, 1, stride), nn.BatchNorm2d(f1), nn.ReLU(inplace=True),
            nn.Conv2d(f1, f2, 3, padding=1), nn.BatchNorm2d(f2), nn.ReLU(inplace=True),
            nn.Conv2d(f2, f3, 1), nn.BatchNorm2d(f3),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(cin, f3, 1, stride), nn.BatchNorm2d(f3)) if project else nn.Identity()

    def forward(self, x):
        return torch.relu(self.branch(x) + self.shortcut(x))


class SeedResNet50(nn.Module):
    """The course's ResNet50 (conv biases kept, as in Keras): 23,600,006 parameters at 64x64/6."""

    STAGES = ((3, (64, 64, 256), 1), (4, (128, 128, 512), 2), (6, (256, 256, 1024), 2), (3, (512, 512, 2048), 2))

    def __init__(self, classes: int = 6):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ZeroPad2d(3), nn.Conv2d(3, 64, 7, 2), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        ]
        cin = 64
        for blocks, filters, stride in self.STAGES:
            for i in range(blocks):
                layers.append(Bottleneck(cin, filters, stride if i == 0 else 1, project=i == 0))
                cin = filters[2]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))

    def forward(self, x):
        return self.head(self.features(x))


class HappyModel(nn.Module):
    """The Keras tutorial's smile detector: 37,633 parameters at 64x64x3."""

    def __init__(self, size: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.ZeroPad2d(3), nn.Conv2d(3, 32, 7), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * (size // 2) ** 2, 1),
        )

    def forward(self, x):
        return self.net(x)


def build(name: str, classes: int) -> nn.Module:
    if name == "happy":
        return HappyModel()
    if name == "resnet50":
        return SeedResNet50(classes)
    raise ValueError(f"No PyTorch reference for {name!r}: there are happy and resnet50.")


def parameter_count(model: nn.Module) -> int:
    """Trainable + BN running statistics, the way Keras counts (gamma/beta + mean/var)."""
    buffers = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    return sum(p.numel() for p in model.parameters()) + buffers


class RecipeTrainer:
    """A peer trained as cnnzoo's recipe trains: Adam with a linear warm-up then a cosine to 0, per
    step; random shifts of up to 10% each way, edge pixels repeated (cnnzoo's `shift`);
    channels_last; bf16 autocast where cnnzoo's `auto` picks bf16. Images are uint8 NHWC arrays, as
    cnnzoo loads them."""

    def __init__(self, name: str, classes: int, train_x, train_y, recipe, epochs: int, seed: int = 0):
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.manual_seed(seed)
        self.net = build(name, classes).to(self.device, memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.net.parameters(), recipe.lr)
        self.batch_size = recipe.batch_size
        steps_per_epoch = math.ceil(len(train_y) / recipe.batch_size)
        warmup, total = round(recipe.warmup * steps_per_epoch), epochs * steps_per_epoch

        def lr_factor(step: int) -> float:
            if step < warmup:
                return step / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        from cnnzoo.training.config import auto_precision

        # bf16 where cnnzoo's `auto` trains in bf16 (a GPU, a CPU with bfloat16 arithmetic): the same work
        bf16 = self.device == "cuda" or auto_precision() == "bf16"
        self.autocast = dict(device_type=self.device, dtype=torch.bfloat16, enabled=bf16)
        self.precision = "bf16 autocast" if bf16 else "fp32"
        self.train_x, self.train_y = self.tensor(train_x), torch.from_numpy(train_y).to(self.device)
        self.rng = np.random.default_rng(seed)

    def tensor(self, x) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device).permute(0, 3, 1, 2).float().div(255).contiguous(
            memory_format=torch.channels_last)

    def train_epoch(self) -> None:
        self.net.train()
        side = self.train_x.shape[-1]
        pad = round(0.1 * side)
        for index in torch.from_numpy(self.rng.permutation(len(self.train_y))).to(self.device).split(self.batch_size):
            padded = torch.nn.functional.pad(self.train_x[index], (pad,) * 4, mode="replicate")
            dy, dx = self.rng.integers(0, 2 * pad + 1, (2, len(index)))
            images = torch.stack([padded[i, :, y:y + side, x:x + side] for i, (y, x) in enumerate(zip(dy, dx))])
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(**self.autocast):
                loss = torch.nn.functional.cross_entropy(self.net(images), self.train_y[index])
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
        if self.device == "cuda":
            torch.cuda.synchronize()

    def accuracy(self, x: torch.Tensor, y, batch_size: int | None = None) -> float:
        """Accuracy on `x` (from `tensor`), in batches of `batch_size` (None: all at once)."""
        self.net.eval()
        y = torch.as_tensor(y).to(self.device)
        with torch.no_grad(), torch.autocast(**self.autocast):
            right = sum(int((self.net(part).argmax(-1) == labels).sum())
                        for part, labels in zip(x.split(batch_size or len(x)), y.split(batch_size or len(x))))
        return right / len(y)
