"""Time to accuracy: training seconds until a model's test accuracy first reaches a target.

Issue 7's accuracy check on the fast path: ResNet-50 on `signs` to 97%, for the same three
peers as the throughput table (benchmarks/train_speed.py runs them, each in its own
process, and writes both tables):
  (a) cnnzoo: `cnnzoo train resnet50 --dataset signs` through `cnnzoo.training.fit.train`, its
      default recipe (the cosine runs over the recipe's epochs; the run stops once the
      target is reached), validation pass and checkpoints included in the clock;
  (b) plain PyTorch: benchmarks/torch_reference.py's network on the same training images,
      the same recipe (Adam, warm-up, cosine, batch, random shifts), channels_last;
  (c) the course's Keras code in stock Keras 3: compile("adam"), fit on float arrays,
      batch 32, no augmentation, for at most as many epochs as (a)'s recipe.
The test split is scored after every epoch, outside the clock; no choice depends on it.
"""

from __future__ import annotations

import math
import tempfile
import time

import cnnzoo  # noqa: F401  (selects the Keras backend before anything imports keras)

def _data(model: str, dataset: str):
    """The dataset at the model's input size, split as `cnnzoo train` splits it."""
    from cnnzoo.datasets import load
    from cnnzoo.models import model_info

    height, width, channels = model_info(model).input_shape
    return load(dataset, image_size=(height, width), channels=channels)


def result(curve: list[tuple[int, float, float]], target: float, settings: str) -> dict:
    """curve: (epoch, training seconds so far, test accuracy) per epoch."""
    reached = next((point for point in curve if point[2] >= target), None)
    return {
        "target": target, "seconds": round(reached[1], 1) if reached else None,
        "epoch": reached[0] if reached else None, "epochs_run": len(curve),
        "best_accuracy": round(max(p[2] for p in curve), 4) if curve else None,
        "curve": [[e, round(t, 1), round(a, 4)] for e, t, a in curve], "settings": settings,
    }


def _clock(test_x, test_y, target: float):
    import keras
    import numpy as np

    class TestAccuracyClock(keras.callbacks.Callback):
        """Training seconds (test scoring excluded) and test accuracy at each epoch's end;
        stops the run at the target."""

        def __init__(self):
            super().__init__()
            self.curve: list[tuple[int, float, float]] = []

        def on_train_begin(self, logs=None):
            self.start, self.paused = time.perf_counter(), 0.0

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            elapsed = now - self.start - self.paused
            probabilities = self.model.predict(test_x, batch_size=64, verbose=0)
            predicted = (probabilities[:, 0] > 0.5) if probabilities.shape[-1] == 1 else probabilities.argmax(-1)
            accuracy = float(np.mean(predicted == test_y))
            self.paused += time.perf_counter() - now
            self.curve.append((epoch + 1, elapsed, accuracy))
            if accuracy >= target:
                self.model.stop_training = True

    return TestAccuracyClock()


def child_cnnzoo(model: str, dataset: str, target: float, epochs: int | None = None) -> dict:
    import keras

    from cnnzoo.training.config import TrainConfig
    from cnnzoo.training.fit import train

    data = _data(model, dataset)
    clock = _clock(data.test.x, data.test.y, target)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(model, dataset, epochs=epochs, out=out)
        train(config, verbose=0, callbacks=[clock])
        resolved = config.resolved()
    return result(clock.curve, target, f"keras {keras.__version__} on {keras.backend.backend()}, cnnzoo train's "
                  f"default recipe ({resolved.epochs} epochs, Adam {resolved.lr:g}, "
                  f"{'augment ' + resolved.augment if resolved.augment else 'no augmentation'})")


def child_keras(model: str, dataset: str, target: float, epochs: int | None = None) -> dict:
    import keras

    from cnnzoo.models import model_info

    data = _data(model, dataset)
    epochs = epochs or model_info(model).recipe.epochs
    clock = _clock(data.test.x.astype("float32") / 255, data.test.y, target)
    net = model_info(model).build(input_shape=data.image_shape, classes=len(data.class_names))
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    net.fit(data.train.x.astype("float32") / 255, data.train.y, batch_size=32, epochs=epochs, verbose=0,
            callbacks=[clock])
    return result(clock.curve, target, f"stock keras {keras.__version__} on {keras.backend.backend()}, "
                  f"Adam 1e-3 constant, batch 32, up to {epochs} epochs")


def child_torch(model: str, dataset: str, target: float, epochs: int | None = None) -> dict:
    import numpy as np
    import torch

    import torch_reference
    from cnnzoo.models import model_info

    data = _data(model, dataset)
    recipe = model_info(model).recipe
    epochs = epochs or recipe.epochs
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    net = torch_reference.build(model, len(data.class_names)).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), recipe.lr)
    steps_per_epoch = math.ceil(len(data.train.y) / recipe.batch_size)
    warmup, total = round(recipe.warmup * steps_per_epoch), epochs * steps_per_epoch

    def lr_factor(step: int) -> float:  # linear warm-up, then a cosine to 0, as cnnzoo's recipe
        if step < warmup:
            return step / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    autocast = dict(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda")

    def tensor(x):
        return torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float().div(255).contiguous(
            memory_format=torch.channels_last)

    train_x, train_y = tensor(data.train.x), torch.from_numpy(data.train.y).to(device)
    test_x, test_y = tensor(data.test.x), torch.from_numpy(data.test.y).to(device)
    side = train_x.shape[-1]
    pad = round(0.1 * side)  # shifts of up to 10% each way, edge pixels repeated (cnnzoo's "shift")
    rng = np.random.default_rng(0)
    curve, start, paused = [], time.perf_counter(), 0.0
    for epoch in range(epochs):
        net.train()
        for index in torch.from_numpy(rng.permutation(len(train_y))).to(device).split(recipe.batch_size):
            padded = torch.nn.functional.pad(train_x[index], (pad,) * 4, mode="replicate")
            dy, dx = rng.integers(0, 2 * pad + 1, (2, len(index)))
            images = torch.stack([padded[i, :, y:y + side, x:x + side] for i, (y, x) in enumerate(zip(dy, dx))])
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(**autocast):
                loss = torch.nn.functional.cross_entropy(net(images), train_y[index])
            loss.backward()
            optimizer.step()
            schedule.step()
        if device == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        elapsed = now - start - paused
        net.eval()
        with torch.no_grad(), torch.autocast(**autocast):
            accuracy = float((net(test_x).argmax(-1) == test_y).float().mean())
        paused += time.perf_counter() - now
        curve.append((epoch + 1, elapsed, accuracy))
        if accuracy >= target:
            break
    precision = "bf16 autocast" if device == "cuda" else "fp32"
    return result(curve, target, f"torch {torch.__version__}, eager {precision}, channels_last, the same recipe")


CHILDREN = {"cnnzoo": child_cnnzoo, "torch": child_torch, "keras": child_keras}
