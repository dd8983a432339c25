"""A detection dataset made of real photographs: object cut-outs pasted onto other photographs.

    .venv/bin/python bench/detection_data.py [--images 300] [--seed 0] [--out DIR]

Objects are cut from scikit-image's sample photographs (the cat's face from `chelsea`, the cup
and saucer from `coffee`, the rocket from `rocket`, the astronaut's face from `astronaut`, the
motorcycle from `stereo_motorcycle`), with an elliptical or rectangular alpha mask feathered at
the edge. Backgrounds are other real photographs (scikit-learn's `china` and `flower`, and
scikit-image's hubble, brick, grass, gravel, camera, moon, immunohistochemistry, retina, clock,
text), randomly cropped (4:3), flipped and resized to 640x480. Each image gets 0-3 objects at
a random scale (longer side 60-260 px), position, flip and brightness, overlapping earlier ones
by IoU <= 0.2; about 1 in 20 images has none (a negative). The photographs the objects come
from are never used as backgrounds, so no unlabelled copy of an object appears anywhere.

Images are written as JPEG (quality 90) with `annotations.json` listing, per file, the boxes
as (tag index, left, top, width, height) normalised, Custom Vision's convention.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

WIDTH_PX, HEIGHT_PX = 640, 480


@dataclass(frozen=True)
class CutOut:
    tag: str
    photo: str  # skimage.data function name
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in the source photograph
    shape: str  # "ellipse" or "rect"


CUT_OUTS = (
    CutOut("cat", "chelsea", (40, 10, 400, 300), "ellipse"),
    CutOut("cup", "coffee", (75, 15, 480, 390), "ellipse"),
    CutOut("rocket", "rocket", (295, 125, 347, 410), "rect"),
    CutOut("astronaut", "astronaut", (150, 15, 305, 170), "ellipse"),
    CutOut("motorcycle", "stereo_motorcycle", (90, 95, 690, 455), "rect"),
)
TAGS = tuple(c.tag for c in CUT_OUTS)
SKIMAGE_BACKGROUNDS = (
    "hubble_deep_field",
    "brick",
    "grass",
    "gravel",
    "camera",
    "moon",
    "immunohistochemistry",
    "retina",
    "clock",
    "text",
)


@dataclass(frozen=True)
class DetectionSample:
    path: Path
    boxes: list[tuple[int, float, float, float, float]]


def _photo(name: str) -> Image.Image:
    import skimage.data

    array = getattr(skimage.data, name)()
    if isinstance(array, tuple):  # stereo_motorcycle: (left, right, disparity)
        array = array[0]
    return Image.fromarray(np.asarray(array)).convert("RGB")


def _backgrounds() -> list[Image.Image]:
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(image) for image in load_sample_images().images]
    return photos + [_photo(name) for name in SKIMAGE_BACKGROUNDS]


def _cut_outs() -> list[tuple[Image.Image, Image.Image]]:
    """Per tag, (RGB patch, feathered alpha mask)."""
    result = []
    for cut in CUT_OUTS:
        patch = _photo(cut.photo).crop(cut.box)
        mask = Image.new("L", patch.size, 0)
        draw = ImageDraw.Draw(mask)
        inset = 2  # room for the feathering inside the box
        shape = (inset, inset, patch.size[0] - 1 - inset, patch.size[1] - 1 - inset)
        if cut.shape == "ellipse":
            draw.ellipse(shape, fill=255)
        else:
            draw.rectangle(shape, fill=255)
        result.append((patch, mask.filter(ImageFilter.GaussianBlur(1.5))))
    return result


def _background(photos: list[Image.Image], rng: np.random.Generator) -> Image.Image:
    photo = photos[int(rng.integers(len(photos)))]
    width, height = photo.size
    crop_w = min(width, round(height * 4 / 3))
    crop_w = int(crop_w * rng.uniform(0.6, 1.0))
    crop_h = round(crop_w * 3 / 4)
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    image = photo.crop((left, top, left + crop_w, top + crop_h))
    image = image.resize((WIDTH_PX, HEIGHT_PX), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _paste(
    canvas: Image.Image,
    cut: tuple[Image.Image, Image.Image],
    placed: list[tuple[int, int, int, int]],
    rng: np.random.Generator,
) -> tuple[int, int, int, int] | None:
    patch, mask = cut
    longer = rng.uniform(60, 260)
    scale = longer / max(patch.size)
    size = (max(8, round(patch.size[0] * scale)), max(8, round(patch.size[1] * scale)))
    patch = patch.resize(size, Image.Resampling.BILINEAR)
    mask = mask.resize(size, Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        mask = mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    patch = ImageEnhance.Brightness(patch).enhance(rng.uniform(0.75, 1.25))
    for _ in range(30):
        x = int(rng.integers(0, WIDTH_PX - size[0] + 1))
        y = int(rng.integers(0, HEIGHT_PX - size[1] + 1))
        box = (x, y, x + size[0], y + size[1])
        if all(_iou(box, other) <= 0.2 for other in placed):
            canvas.paste(patch, (x, y), mask)
            # The true box is the visible mask's extent (the feathered rim below 50% excluded).
            xs, ys = np.nonzero(np.asarray(mask).T >= 128)
            return (
                x + int(xs.min()),
                y + int(ys.min()),
                x + int(xs.max()) + 1,
                y + int(ys.max()) + 1,
            )
    return None


def generate(out_dir: Path, *, images: int = 300, seed: int = 0) -> list[DetectionSample]:
    """Write (or reuse, when already made with the same arguments) the dataset in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "annotations.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data["images"] == images and data["seed"] == seed and data["tags"] == list(TAGS):
            return [
                DetectionSample(out_dir / row["file"], [tuple(b) for b in row["boxes"]])
                for row in data["items"]
            ]
    rng = np.random.default_rng(seed)
    photos = _backgrounds()
    cuts = _cut_outs()
    items = []
    samples = []
    for index in range(images):
        canvas = _background(photos, rng)
        count = 0 if rng.random() < 0.05 else int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
        placed: list[tuple[int, int, int, int]] = []
        boxes = []
        for _ in range(count):
            tag = int(rng.integers(len(cuts)))
            box = _paste(canvas, cuts[tag], placed, rng)
            if box is None:
                continue
            placed.append(box)
            x1, y1, x2, y2 = box
            boxes.append(
                (tag, x1 / WIDTH_PX, y1 / HEIGHT_PX, (x2 - x1) / WIDTH_PX, (y2 - y1) / HEIGHT_PX)
            )
        name = f"{index:04d}.jpg"
        canvas.save(out_dir / name, quality=90)
        items.append({"file": name, "boxes": boxes})
        samples.append(DetectionSample(out_dir / name, boxes))
    manifest.write_text(
        json.dumps({"images": images, "seed": seed, "tags": list(TAGS), "items": items})
    )
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/out/detection-data"))
    args = parser.parse_args()
    samples = generate(args.out, images=args.images, seed=args.seed)
    per_tag = np.bincount([b[0] for s in samples for b in s.boxes], minlength=len(TAGS))
    negatives = sum(1 for s in samples if not s.boxes)
    counts = dict(zip(TAGS, per_tag.tolist(), strict=True))
    print(f"{len(samples)} images in {args.out}; boxes per tag {counts}")
    print(f"{negatives} negatives (no boxes)")


if __name__ == "__main__":
    main()
