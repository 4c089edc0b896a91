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

import tempfile
import time

import cnnzoo  # noqa: F401  (selects the Keras backend before anything imports keras)

def _data(model: str, dataset: str, validation: float = 0.0):
    """The dataset at the model's input size, split as `cnnzoo train` splits it (`validation`: the
    share of training images it holds out)."""
    from cnnzoo.datasets import load
    from cnnzoo.models import model_info

    height, width, channels = model_info(model).input_shape
    return load(dataset, image_size=(height, width), channels=channels, validation=validation)


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
    import torch_reference
    from cnnzoo.models import model_info

    data = _data(model, dataset)
    recipe = model_info(model).recipe
    epochs = epochs or recipe.epochs
    trainer = torch_reference.RecipeTrainer(model, len(data.class_names), data.train.x, data.train.y, recipe, epochs)
    test_x = trainer.tensor(data.test.x)
    curve, start, paused = [], time.perf_counter(), 0.0
    for epoch in range(epochs):
        trainer.train_epoch()
        now = time.perf_counter()
        elapsed = now - start - paused
        accuracy = trainer.accuracy(test_x, data.test.y)
        paused += time.perf_counter() - now
        curve.append((epoch + 1, elapsed, accuracy))
        if accuracy >= target:
            break
    return result(curve, target, f"torch {torch_reference.torch.__version__}, eager {trainer.precision}, "
                  "channels_last, the same recipe")


CHILDREN = {"cnnzoo": child_cnnzoo, "torch": child_torch, "keras": child_keras}
