"""Calibrate the near-duplicate threshold (training.ml.duplicates.DUPLICATE_SIMILARITY).

    .venv/bin/python bench/duplicates_calibration.py [--no-write]

Originals: the four quadrants (no two overlap) of each of the ten scikit-image photographs of
bench/al_data.py, at twice their native size (512 px, as a camera's photo is larger than the
backbone's 224 px input). For each original, the copies a duplicate check must find: resized to
1/2 and 1/3, JPEG at quality 95 / 75 / 50 / 30, PNG, half size then JPEG 75. The look-alikes it
must not find: the other quadrants of the same photograph (a different photo of the same kind
of thing) and, reported apart, the quadrant shifted by a third of its side (a second shot from a
step away: a judgement call). Everything is embedded with the compact domain's backbone (or
--backbone) through training.ml.features
(the FeatureCache the health check reads); the script prints similarity ranges and, per
threshold, the share of each kind of copy found and of different quadrants flagged.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.al_data import CLASS_PHOTOS, _photo  # noqa: E402
from bench.common import append_result, command_line, machine_line  # noqa: E402
from training.ml.data import ImageRef  # noqa: E402
from training.ml.domains import BACKBONE_FOR_DOMAIN  # noqa: E402
from training.ml.duplicates import DUPLICATE_SIMILARITY, duplicate_view  # noqa: E402
from training.ml.features import FeatureCache, embed_images  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "duplicates"
LANCZOS = Image.Resampling.LANCZOS


def _encode(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def _ref(data: bytes) -> ImageRef:
    return ImageRef(key=hashlib.sha256(data).hexdigest(), open=lambda: io.BytesIO(data))


def _quadrants(photo: Image.Image) -> list[tuple[Image.Image, Image.Image]]:
    """The photograph's four quadrant squares at native resolution (no two overlap), each with
    the same square shifted by a third of its side towards the centre."""
    width, height = photo.size
    side = min(width, height) // 2
    shift = side // 3
    result = []
    for qx, qy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        left, top = qx * (width - side), qy * (height - side)
        dx = shift if qx == 0 else -shift
        box = (left, top, left + side, top + side)
        moved = (left + dx, top, left + dx + side, top + side)
        # Twice the size, as a camera's photo is larger than the backbone's input: a copy at 1/2
        # is still above the input size, one at 1/3 below it.
        size = (2 * side, 2 * side)
        result.append(
            (photo.crop(box).resize(size, LANCZOS), photo.crop(moved).resize(size, LANCZOS))
        )
    return result


def _scaled(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((round(image.width * factor), round(image.height * factor)), LANCZOS)


COPIES = {
    "resized 1/2": lambda im: _encode(_scaled(im, 1 / 2), "PNG"),
    "resized 1/3": lambda im: _encode(_scaled(im, 1 / 3), "PNG"),
    "JPEG q95": lambda im: _encode(im, "JPEG", quality=95),
    "JPEG q75": lambda im: _encode(im, "JPEG", quality=75),
    "JPEG q50": lambda im: _encode(im, "JPEG", quality=50),
    "JPEG q30": lambda im: _encode(im, "JPEG", quality=30),
    "PNG": lambda im: _encode(im, "PNG"),
    "1/2 + JPEG q75": lambda im: _encode(_scaled(im, 1 / 2), "JPEG", quality=75),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--backbone",
        default=BACKBONE_FOR_DOMAIN["general_compact"],
        help="default: the compact domain's (what a project's health check reads)",
    )
    parser.add_argument(
        "--whole", action="store_true", help="compare whole embeddings, not the duplicate view"
    )
    args = parser.parse_args()
    originals: list[bytes] = []
    shifted: list[bytes] = []
    photo_of: list[int] = []
    for p, name in enumerate(CLASS_PHOTOS):
        for crop, moved in _quadrants(_photo(name)):
            originals.append(_encode(crop, "JPEG", quality=90))
            shifted.append(_encode(moved, "JPEG", quality=90))
            photo_of.append(p)
    copies = {
        label: [make(Image.open(io.BytesIO(o)).convert("RGB")) for o in originals]
        for label, make in COPIES.items()
    }
    everything = originals + shifted + [d for ds in copies.values() for d in ds]
    vectors = embed_images(
        [_ref(d) for d in everything], backbone=args.backbone, cache=FeatureCache(OUT / "features")
    )
    # What the product compares (training.ml.duplicates.duplicate_view), or with --whole the
    # whole embedding.
    vectors = vectors if args.whole else duplicate_view(vectors)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    n = len(originals)
    base = unit[:n]
    lines = [f"| copy | min | median | found at {DUPLICATE_SIMILARITY:.3f} |", "|---|---|---|---|"]
    lowest_copy = 1.0
    for k, label in enumerate(COPIES):
        start = 2 * n + k * n
        sims = np.einsum("ij,ij->i", base, unit[start : start + n])
        lowest_copy = min(lowest_copy, float(sims.min()))
        found = float((sims >= DUPLICATE_SIMILARITY).mean())
        lines.append(f"| {label} | {sims.min():.4f} | {np.median(sims):.4f} | {found:.0%} |")
    gram = base @ base.T
    photo = np.array(photo_of)
    same = (photo[:, None] == photo[None, :]) & ~np.eye(n, dtype=bool)
    other = photo[:, None] != photo[None, :]
    shift_sims = np.einsum("ij,ij->i", base, unit[n : 2 * n])
    same_max = float(gram[same].max())
    lines += [
        "",
        "| look-alike | max | 99th percentile | median | flagged at threshold |",
        "|---|---|---|---|---|",
        f"| other crop, same photograph | {same_max:.4f} | {np.quantile(gram[same], 0.99):.4f} "
        f"| {np.median(gram[same]):.4f} | {(gram[same] >= DUPLICATE_SIMILARITY).mean():.2%} |",
        f"| crop of another photograph | {gram[other].max():.4f} | "
        f"{np.quantile(gram[other], 0.99):.4f} | {np.median(gram[other]):.4f} | "
        f"{(gram[other] >= DUPLICATE_SIMILARITY).mean():.2%} |",
        f"| same crop shifted by 1/3 | {shift_sims.max():.4f} | "
        f"{np.quantile(shift_sims, 0.99):.4f} | {np.median(shift_sims):.4f} | "
        f"{(shift_sims >= DUPLICATE_SIMILARITY).mean():.2%} |",
        "",
        f"Lowest copy {lowest_copy:.4f}, highest different crop of the same photograph "
        f"{same_max:.4f}: midpoint {(lowest_copy + same_max) / 2:.4f}; the code uses "
        f"{DUPLICATE_SIMILARITY}.",
    ]
    lines += [
        "",
        "| threshold | copies found (each kind, in the order above) "
        "| other crops of a photograph flagged |",
        "|---|---|---|",
    ]
    for t in (0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99):
        found = [
            np.einsum("ij,ij->i", base, unit[2 * n + k * n : 3 * n + k * n]) >= t
            for k in range(len(COPIES))
        ]
        each = " / ".join(f"{f.mean():.0%}" for f in found)
        lines.append(f"| {t:.2f} | {each} | {(gram[same] >= t).mean():.1%} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        append_result(
            "Issue 13: near-duplicate threshold (bench/duplicates_calibration.py)",
            f"`{command_line()}` on {machine_line()}; {n} originals (the four "
            f"quadrants of each of {len(CLASS_PHOTOS)} photographs), {args.backbone} embeddings"
            f"{' (whole)' if args.whole else ' (duplicate view)'}, "
            "cosine similarity.\n\n" + table,
        )


if __name__ == "__main__":
    main()
