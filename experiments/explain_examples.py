"""Test images for docs/EXPLAIN.md's pictures: a run's most confident correct prediction of
each class, its most confidently wrong one, and a seeded random sample, written as PNG files that
`cnnzoo explain` then reads.

    python experiments/explain_examples.py RUN OUT [--sample 12]

The images come from the run's own test split (never trained or validated on), decoded
at the model's input size exactly as evaluation decodes them, so `cnnzoo explain` on the
files sees the pixels `cnnzoo evaluate` scored. Writes OUT/correct-<class>.png, OUT/wrong.png and
OUT/sample/NN-<true class>.png, and prints what each one is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--sample", type=int, default=12)
    args = parser.parse_args(argv)

    import cnnzoo  # noqa: F401, I001  (chooses the backend before keras loads)
    from PIL import Image

    from cnnzoo.analysis.metrics import confident_mistakes, predict_proba
    from cnnzoo.datasets import load
    from cnnzoo.inference.predict import input_geometry, load_for_prediction, run_config
    from cnnzoo.models.saving import takes_raw_pixels

    model = load_for_prediction(args.run)
    config = run_config(args.run)
    height, width, channels = input_geometry(model)
    data = load(config["train"]["dataset"], image_size=(height, width), channels=channels,
                validation=config["train"].get("validation", 0.0))
    x, y, names = data.test.x, np.asarray(data.test.y).astype(int).ravel(), data.class_names
    proba = predict_proba(model, x, scale_pixels=not takes_raw_pixels(model))
    predicted = proba.argmax(axis=1)
    wrong = confident_mistakes(y, proba, 1)
    args.out.mkdir(parents=True, exist_ok=True)

    def save(path: Path, i: int) -> None:
        image = np.asarray(x[i])
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
        print(f"{path}: test image {i}, true {names[y[i]]}, predicted {names[predicted[i]]} "
              f"(p = {proba[i, predicted[i]]:.4f})")

    for k, name in enumerate(names):
        right = np.flatnonzero((predicted == y) & (y == k))
        if len(right):
            save(args.out / f"correct-{name.replace(' ', '_')}.png", int(right[np.argmax(proba[right, k])]))
    if len(wrong):
        save(args.out / "wrong.png", int(wrong[0]))
    (args.out / "sample").mkdir(exist_ok=True)
    chosen = np.random.default_rng(0).choice(len(x), size=min(args.sample, len(x)), replace=False)
    for n, i in enumerate(sorted(chosen)):
        save(args.out / "sample" / f"{n:02d}-{names[y[i]].replace(' ', '_')}.png", int(i))
    print(f"test accuracy {np.mean(predicted == y):.1%} on {len(y)} images")


if __name__ == "__main__":
    main()
