"""A generated detection set shaped like real small projects (issue 15's detection figure).

    from bench.detection_project_data import generate_project_set
    samples = generate_project_set(out_dir, count=400, seed=0)               # training images
    held_out = generate_project_set(out_dir2, count=100, seed=1, novel=True)  # unseen objects

Images of 480x640 to 800x600 pixels (portrait and landscape, several sizes), JPEG quality 90,
on textured backgrounds (a colour gradient, noise and random strokes and blobs that are no
object). Five tags, one per shape: disc, square, triangle, cross, ring; 0-6 objects per image
whose longer side is 10-50% of the image's shorter side, overlapping earlier ones by IoU <= 0.3.
Objects are filled with a colour and a pattern (solid, stripes or dots) and get a random
rotation, aspect ratio and outline. With `novel=True` the objects use colours (hues) and a
pattern (checkers) that the training images never show, so the held-out figure measures shapes
learnt, not colours remembered.
"""

from __future__ import annotations

import colorsys
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

TAGS = ("disc", "square", "triangle", "cross", "ring")
SIZES = ((640, 480), (480, 640), (800, 600), (600, 800), (720, 540), (704, 528))
# Hue ranges (0..1): training objects take theirs from TRAIN_HUES, novel ones from NOVEL_HUES.
TRAIN_HUES = ((0.0, 0.12), (0.3, 0.45), (0.6, 0.72))
NOVEL_HUES = ((0.15, 0.25), (0.5, 0.57), (0.78, 0.92))

Box = tuple[int, float, float, float, float]


@dataclass(frozen=True)
class Sample:
    path: Path
    width: int
    height: int
    boxes: list[Box]  # (tag index, left, top, width, height), fractions of the image


def generate_project_set(
    out_dir: Path, *, count: int, seed: int, novel: bool = False, max_objects: int = 6
) -> list[Sample]:
    """Write `count` JPEGs and annotations.json into `out_dir`; return their samples.

    A folder this already filled with the same arguments is read back, not written again:
    benches that run side by side in several processes generate the set once, before any of
    them starts, and none rewrites a file another is reading.
    """
    index_path = out_dir / "annotations.json"
    arguments = {"count": count, "seed": seed, "novel": novel, "max_objects": max_objects}
    existing = _read_index(index_path, arguments)
    if existing is not None:
        return existing
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(count):
        width, height = SIZES[int(rng.integers(len(SIZES)))]
        image = _background(rng, width, height)
        boxes = _draw_objects(image, rng, novel=novel, count=int(rng.integers(0, max_objects + 1)))
        path = out_dir / f"{'novel' if novel else 'img'}-{seed}-{index:04d}.jpg"
        image.save(path, quality=90)
        samples.append(Sample(path, width, height, boxes))
    rows = [[s.path.name, s.width, s.height, s.boxes] for s in samples]
    index_path.write_text(json.dumps({**arguments, "samples": rows}), encoding="utf-8")
    return samples


def _read_index(path: Path, arguments: dict[str, object]) -> list[Sample] | None:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or any(index.get(k) != v for k, v in arguments.items()):
        return None
    samples = [
        Sample(path.parent / name, width, height, [tuple(box) for box in boxes])
        for name, width, height, boxes in index["samples"]
    ]
    return samples if all(sample.path.is_file() for sample in samples) else None


def _colour(rng: np.random.Generator, hues: tuple[tuple[float, float], ...]) -> tuple[int, ...]:
    low, high = hues[int(rng.integers(len(hues)))]
    r, g, b = colorsys.hsv_to_rgb(
        rng.uniform(low, high), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1)
    )
    return (round(r * 255), round(g * 255), round(b * 255))


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    top = rng.integers(40, 200, 3)
    bottom = rng.integers(40, 200, 3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    pixels = top[None, None, :] * (1 - ramp) + bottom[None, None, :] * ramp
    pixels = np.broadcast_to(pixels, (height, width, 3)) + rng.normal(0, 12, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):  # clutter that is no object: strokes and blobs
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        if rng.random() < 0.5:
            x1, y1 = x0 + rng.normal(0, width / 3), y0 + rng.normal(0, height / 3)
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(2, 9)))
        else:
            # An irregular polygon: no shape of the five tags.
            r = rng.uniform(6, min(width, height) / 12)
            points = [
                (
                    x0 + r * rng.uniform(0.3, 1) * math.cos(a),
                    y0 + r * rng.uniform(0.3, 1) * math.sin(a),
                )
                for a in np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(5, 9))))
            ]
            draw.polygon(points, fill=colour)
    return image.filter(ImageFilter.GaussianBlur(0.6))


def _draw_objects(
    image: Image.Image, rng: np.random.Generator, *, novel: bool, count: int
) -> list[Box]:
    width, height = image.size
    short = min(width, height)
    placed: list[tuple[float, float, float, float]] = []
    boxes: list[Box] = []
    for _ in range(count):
        for _attempt in range(20):
            side = rng.uniform(0.10, 0.50) * short
            aspect = rng.uniform(0.7, 1.4)
            w, h = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
            x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
            box = (x0, y0, x0 + w, y0 + h)
            if all(_iou(box, other) <= 0.3 for other in placed):
                break
        else:
            continue
        tag = int(rng.integers(len(TAGS)))
        sprite = _sprite(tag, round(w), round(h), rng, novel=novel)
        image.paste(sprite, (round(x0), round(y0)), sprite)
        placed.append(box)
        boxes.append((tag, x0 / width, y0 / height, w / width, h / height))
    return boxes


def _sprite(tag: int, w: int, h: int, rng: np.random.Generator, *, novel: bool) -> Image.Image:
    """An RGBA object filling its box: the shape's mask over a coloured, patterned fill."""
    scale = 4  # drawn large, then shrunk: smooth edges
    big = (w * scale, h * scale)
    mask = Image.new("L", big, 0)
    draw = ImageDraw.Draw(mask)
    W, H = big
    if TAGS[tag] == "disc":
        draw.ellipse((0, 0, W - 1, H - 1), fill=255)
    elif TAGS[tag] == "square":
        draw.rectangle((0, 0, W - 1, H - 1), fill=255)
    elif TAGS[tag] == "triangle":
        draw.polygon(((W / 2, 0), (W - 1, H - 1), (0, H - 1)), fill=255)
    elif TAGS[tag] == "cross":
        t = rng.uniform(0.25, 0.4)
        draw.rectangle((W * (0.5 - t / 2), 0, W * (0.5 + t / 2), H - 1), fill=255)
        draw.rectangle((0, H * (0.5 - t / 2), W - 1, H * (0.5 + t / 2)), fill=255)
    else:  # ring
        draw.ellipse((0, 0, W - 1, H - 1), fill=255)
        t = rng.uniform(0.25, 0.35)
        draw.ellipse((W * t, H * t, W * (1 - t), H * (1 - t)), fill=0)
    fill = _fill(big, rng, novel=novel)
    sprite = fill.convert("RGBA")
    sprite.putalpha(mask)
    if rng.random() < 0.5:
        sprite = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return sprite.resize((max(1, w), max(1, h)), Image.Resampling.LANCZOS)


def _fill(size: tuple[int, int], rng: np.random.Generator, *, novel: bool) -> Image.Image:
    hues = NOVEL_HUES if novel else TRAIN_HUES
    first, second = _colour(rng, hues), _colour(rng, hues)
    image = Image.new("RGB", size, first)
    draw = ImageDraw.Draw(image)
    W, H = size
    pattern = "checkers" if novel else ("solid", "stripes", "dots")[int(rng.integers(3))]
    step = max(8, int(min(W, H) / rng.uniform(4, 9)))
    if pattern == "stripes":
        angle = rng.uniform(0, math.pi)
        dx, dy = math.cos(angle), math.sin(angle)
        for k in range(-2 * max(W, H) // step, 2 * max(W, H) // step):
            cx, cy = W / 2 + k * step * -dy, H / 2 + k * step * dx
            draw.line(
                (cx - dx * 2 * W, cy - dy * 2 * H, cx + dx * 2 * W, cy + dy * 2 * H),
                fill=second,
                width=step // 2,
            )
    elif pattern == "dots":
        for x in range(step // 2, W, step):
            for y in range(step // 2, H, step):
                draw.ellipse((x - step / 4, y - step / 4, x + step / 4, y + step / 4), fill=second)
    elif pattern == "checkers":
        for x in range(0, W, step):
            for y in range(0, H, step):
                if (x // step + y // step) % 2:
                    draw.rectangle((x, y, x + step, y + step), fill=second)
    return image


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
