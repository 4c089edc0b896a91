"""The door on camera-like frames: SMILEsmileD test faces pasted into larger photos.

    python benchmarks/door_faces.py RUN [--faces 600] [--seed 0 [1 ...]] [--empty 200] [--markdown docs/SERVE.md]
                                        [--figure docs/figures/door-faces.png]

Each test-split face (a 64x64 grey crop) is enlarged to 20-200 pixels across and pasted at a
random place into a frame of 64-1024 pixels, the face filling 10-40% of the frame's area, on
one of: another picture (scikit-image's bundled photos, none with a face), noise, a gradient or
a flat colour; the whole frame is then tinted (a gain per colour channel, as a camera's white
balance) and saved as a JPEG. The door's decision (open = smiling) is scored on the plain test
crops and on these frames, with the face step (cnnzoo.inference.faces) and without it (the
whole frame squeezed to the model's input), with the detection rate and the detector's time; and
on as many frames made the same way without a face, how often the door still opens.
Several `--seed`s pool their frames: one seed's 600 frames move the gap by points, not tenths.
`--markdown FILE` replaces the table between the markers in FILE; `--figure PNG` draws a
head-and-shoulders photo (scikit-image's astronaut) going through the face step.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BACKGROUNDS = ("picture", "noise", "gradient", "colour")
PICTURES = ("coins", "coffee", "chelsea", "rocket", "moon", "page", "text", "clock")  # no person in them
SIZES = ((20, 30), (30, 60), (60, 201))  # face sizes reported apart (pixels across)
BEGIN, END = "<!-- door_faces table: begin -->", "<!-- door_faces table: end -->"


def background(kind: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    if kind == "picture":
        from skimage import data

        picture = np.asarray(getattr(data, PICTURES[rng.integers(len(PICTURES))])())
        img = Image.fromarray(picture).convert("RGB")
        return img.resize((width, height), Image.Resampling.BILINEAR)
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if kind == "gradient":
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, width)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, height)[:, None, None]
        ramp = a + (b - a) * t
        return Image.fromarray(np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8))
    return Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 256, 3)))


def composite(face: np.ndarray | None, rng: np.random.Generator, kind: str | None = None,
              side: int | None = None) -> tuple[bytes, tuple[int, int, int, int]]:
    """(JPEG bytes of a frame holding `face`, the face's box x, y, width, height); with no face,
    the frame it would have been pasted into."""
    side = side or round(np.exp(rng.uniform(np.log(20), np.log(200))))
    area = side * side / rng.uniform(0.1, 0.4)
    aspect = rng.uniform(3 / 4, 4 / 3)
    width = int(np.clip(np.sqrt(area * aspect), max(64, side), 1024))
    height = int(np.clip(np.sqrt(area / aspect), max(64, side), 1024))
    frame = background(kind or BACKGROUNDS[rng.integers(len(BACKGROUNDS))], width, height, rng)
    x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    if face is not None:
        grey = Image.fromarray(face[:, :, 0]).resize((side, side), Image.Resampling.BILINEAR)
        frame.paste(grey.convert("RGB"), (x, y))
    tint = rng.uniform(0.7, 1.3, 3)
    pixels = np.clip(np.asarray(frame, dtype=np.float32) * tint, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=int(rng.integers(70, 96)))
    return out.getvalue(), (x, y, side, side)


def _jpeg(face: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(face[:, :, 0]).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _on_face(box, truth) -> bool:
    """The judged crop's centre lies on the pasted face (its middle half)."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return abs(cx - (truth[0] + truth[2] / 2)) < truth[2] / 4 and abs(cy - (truth[1] + truth[3] / 2)) < truth[3] / 4


def evaluate(run: Path, n: int, seeds: list[int], empty: int) -> dict:
    """The tables' figures over `n` test faces (one frame each) and `empty` frames without a face per
    seed, all seeds' frames pooled."""
    import cnnzoo  # noqa: F401  (chooses the Keras backend)
    from cnnzoo.analysis.metrics import predict_proba
    from cnnzoo.datasets import load
    from cnnzoo.datasets.images import try_decode
    from cnnzoo.inference import faces as face_step
    from cnnzoo.inference.predict import load_for_prediction, run_config

    model = load_for_prediction(run)
    config = run_config(run)
    crop = face_step.face_crop("on", config["preprocessing"])
    size, channels = tuple(config["preprocessing"]["image_size"]), config["preprocessing"]["channels"]
    data = load(config["train"]["dataset"], image_size=size, channels=channels)
    def step(data_bytes):  # the door's face step on one encoded image -> (faces, detector ms)
        img, factor, _ = face_step.open_frame(data_bytes, channels)
        started = time.perf_counter()
        found, _ = face_step.find_faces(img, crop, size, channels, factor=factor)
        return found, (time.perf_counter() - started) * 1000

    crops_found, frames, frames_found, squeezed, ms_all, empty_found, picks = [], [], [], [], [], [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(data.test.y), min(n, len(data.test.y)), replace=False)
        picks.append(pick)
        for face in data.test.x[pick]:
            crops_found.append(step(_jpeg(face))[0])
            frame, truth = composite(face, rng)
            frames.append(truth)
            squeezed.append(try_decode(frame, size, channels)[0])
            found, ms = step(frame)
            frames_found.append(found)
            ms_all.append(ms)
        empty_found += [step(composite(None, rng)[0])[0] for _ in range(empty)]  # after the faces: theirs stay
    pick = np.concatenate(picks)
    faces, labels = data.test.x[pick], np.asarray(data.test.y)[pick].astype(int)
    # Every image the model judges, in one pass each.
    p_crops = predict_proba(model, faces)[:, 1]
    p_squeezed = predict_proba(model, np.stack(squeezed))[:, 1]

    def doors(found_lists):  # the door's answer on each frame: open, closed or no face
        return [face_step.door(list(p), [f.too_small for f in found], 0.5)[0] if found else "no face"
                for found, p in zip(found_lists, _probabilities(model, found_lists))]

    def opened(found_lists):
        return np.array([answer == "open" for answer in doors(found_lists)])

    rows = {"crops": (p_crops >= 0.5) == labels, "crops+faces": opened(crops_found) == labels,
            "frames": (p_squeezed >= 0.5) == labels, "frames+faces": opened(frames_found) == labels}
    hits = [[_on_face(f.box, truth) for f in found] for found, truth in zip(frames_found, frames)]
    detected = np.array([any(h) for h in hits])
    by_size = {}
    for a, b in SIZES:
        chosen = np.array([a <= truth[2] < b for truth in frames])
        by_size[f"{a}-{b - 1}"] = (int(chosen.sum()), float(rows["frames+faces"][chosen].mean()) if chosen.any() else None,
                                   float(detected[chosen].mean()) if chosen.any() else None)
    answers = doors(empty_found)
    return {"n": len(labels), "smiling": float(labels.mean()),
            "accuracy": {k: float(np.mean(v)) for k, v in rows.items()},
            "seeds": len(seeds), "empty": (len(empty_found), answers.count("no face"), answers.count("open")),
            "detected": float(detected.mean()), "false_faces": int(sum(len(h) - sum(h) for h in hits)),
            "whole_crops": int(sum(bool(found and found[0].whole_frame) for found in crops_found)),
            "hedged_crops": int(sum(bool(found and found[0].whole is not None) for found in crops_found)),
            "detect_ms": (float(np.median(ms_all)), float(np.percentile(ms_all, 90))), "by_size": by_size}


def _probabilities(model, found_lists) -> list[np.ndarray]:
    """p(smiling) of each frame's judged faces (the mean over each face's views), in one pass."""
    from cnnzoo.analysis.metrics import predict_proba
    from cnnzoo.inference.faces import inputs, pooled

    arrays = [array for found in found_lists for array in inputs(found)]
    p = predict_proba(model, np.stack(arrays)) if arrays else np.zeros((0, 2))
    per_frame = np.split(p, np.cumsum([len(inputs(found)) for found in found_lists])[:-1]) if found_lists else []
    return [np.array([row[1] for row in pooled(rows, found)]) for rows, found in zip(per_frame, found_lists)]


def figure(run: Path, out: Path) -> None:
    """The astronaut with her face's box and p(smiling), and the crop the model judged."""
    from PIL import ImageDraw
    from skimage import data

    import cnnzoo  # noqa: F401
    from cnnzoo.inference import faces as face_step
    from cnnzoo.inference.predict import load_for_prediction, run_config

    model, pre = load_for_prediction(run), run_config(run)["preprocessing"]
    photo = Image.fromarray(data.astronaut())
    found, _ = face_step.find_faces(photo, face_step.face_crop("auto", pre), tuple(pre["image_size"]), pre["channels"])
    p = _probabilities(model, [found])[0]
    door, reason = face_step.door(list(p), [f.too_small for f in found], 0.5)
    canvas = Image.new("RGB", (photo.width + 220, photo.height), "white")
    canvas.paste(photo, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for k, (face, pk) in enumerate(zip(found, p)):
        x, y, w, h = face.box
        draw.rectangle((x, y, x + w, y + h), outline=(30, 132, 73) if pk >= 0.5 else (192, 57, 43), width=3)
        draw.text((x, y - 14), f"{k + 1}: p(smiling) = {pk:.2f}", fill="white", stroke_width=2, stroke_fill="black")
        crop = Image.fromarray(face.pixels[:, :, 0]).resize((192, 192), Image.Resampling.NEAREST)
        canvas.paste(crop, (photo.width + 14, 40 + 230 * k))
        draw.text((photo.width + 14, 40 + 230 * k + 196), f"face {k + 1}, as the model sees it", fill="black")
    draw.text((photo.width + 14, photo.height - 40), f"door {door}:\n{reason}", fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)


def markdown(result: dict, command: str) -> str:
    a = result["accuracy"]
    lines = [
        (f"Measured with `{command}` on {platform.machine()} {platform.system()}, {os.cpu_count()} cores (load "
         f"average {result['load']:.1f} from other jobs when it started), {result['n']} test faces "
         f"({result['smiling']:.0%} smiling; {result['n'] // result['seeds']} drawn by each seed), one composite "
         "frame each:"),
        "",
        "| images | door's accuracy without the face step | with it |",
        "| --- | ---: | ---: |",
        f"| the plain 64x64 test crops | {a['crops']:.1%} | {a['crops+faces']:.1%} |",
        f"| composite frames (64-1024 px, faces 20-200 px) | {a['frames']:.1%} | {a['frames+faces']:.1%} |",
        "",
        (f"The face was found in {result['detected']:.1%} of the frames ({result['false_faces']} boxes elsewhere in "
         f"all); {result['whole_crops']} of the {result['n']} plain crops were judged whole, and "
         f"{result['hedged_crops']} both whole and on a smaller box the cascade was unsure of. The detector took "
         f"{result['detect_ms'][0]:.0f} ms a frame (median; 90th percentile {result['detect_ms'][1]:.0f} ms)."),
        "",
        (f"On {result['empty'][0]} frames made the same way without a face, the door answered \"no face found\" "
         f"{result['empty'][1]} times and opened {result['empty'][2]} times (a box on the background judged smiling)."),
        "",
        "| face size (px across) | frames | door's accuracy with the face step | face found |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, (count, acc, found) in result["by_size"].items():
        lines.append(f"| {name} | {count} | {acc:.1%} | {found:.1%} |" if count else f"| {name} | 0 | | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--faces", type=int, default=600, help="test faces per seed (one frame each)")
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more: their frames are pooled")
    parser.add_argument("--empty", type=int, default=200, help="frames without a face, per seed")
    parser.add_argument("--markdown", type=Path, help="replace the table between its markers in this file")
    parser.add_argument("--figure", type=Path, help="draw the astronaut going through the face step (PNG)")
    args = parser.parse_args(argv)
    if args.figure:
        figure(args.run, args.figure)
    load = os.getloadavg()[0]
    result = {**evaluate(args.run, args.faces, args.seed, args.empty), "load": load}
    words = [("RUN" if word == str(args.run) else word) for word in (sys.argv[1:] if argv is None else argv)]
    command = "python benchmarks/door_faces.py " + " ".join(words)
    table = markdown(result, command)
    print(table)
    if args.markdown:
        text = args.markdown.read_text()
        start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
        args.markdown.write_text(text[:start] + "\n" + table + "\n" + text[stop:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
