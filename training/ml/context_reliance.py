"""Context reliance: does a tag's score come from the object or from its surroundings?

Method (an occlusion test in the spirit of Zeiler & Fergus 2014 and of the "background
challenge", Xiao et al. 2021): for each image of a tag, score the model's crop three times —
as is, with the object region painted over, and with everything but the object painted over —
and compare the tag's probability. The object region is given per image: the labelled boxes in
a detection project, or for classification the hottest quarter of the image's Grad-CAM map
(training.ml.saliency.top_region). The paint is the backbone's mean colour (a neutral input:
zero after normalisation).

A tag is flagged as likely learning the background when its predictions survive masking the
object (of the images predicted as the tag as they are, at least half still are) AND masking
the object costs its score no more than masking the surroundings does (within SAME_DROP; a
score that neither mask moves survives without the object, so it is flagged too).

Limits: the painted patch is itself unlike any training image, so scores move a little for
any mask; with the Grad-CAM region, a model that keys on one compact background cue (a hand,
a plate) finds that cue "hottest" and the test measures whether the decision is local, not
whether it is the right object — only boxes give the object independently of the model; a
few images per tag give a rough figure, not a verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

ScoreFn = Callable[[list[np.ndarray]], np.ndarray]  # N uint8 (H, W, 3) -> float32 (N, T)

SURVIVAL_TO_FLAG = 0.5
SAME_DROP = 0.05  # drops closer than this count as equal (probabilities saturate near 1)


@dataclass(frozen=True)
class TagReliance:
    """One tag's figures over `images` of its images (probabilities in 0..1)."""

    tag_index: int
    images: int
    score: float  # mean probability of the tag, image as is
    score_without_object: float
    score_without_surroundings: float
    predicted: int  # of `images`, those the model predicts as the tag when nothing is masked
    survives_without_object: float  # of `predicted`, the fraction still predicted as the tag
    is_background_suspect: bool

    @property
    def object_drop(self) -> float:
        return self.score - self.score_without_object

    @property
    def surroundings_drop(self) -> float:
        return self.score - self.score_without_surroundings


def paint(pixels: np.ndarray, mask: np.ndarray, colour: Sequence[int]) -> np.ndarray:
    """A copy of uint8 (S, S, 3) `pixels` with the True cells of (S, S) `mask` set to `colour`."""
    out = pixels.copy()
    out[mask] = np.asarray(colour, dtype=np.uint8)
    return out


def box_mask(
    boxes: Sequence[Sequence[float]],
    height_px: int,
    width_px: int,
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
) -> np.ndarray:
    """(height_px, width_px) mask of normalised boxes (left, top, width, height, fractions of
    the whole image) inside the pixels the model sees, themselves the `crop` (left, top, width,
    height fractions of the image; the whole image by default)."""
    crop_left, crop_top, crop_w, crop_h = crop
    mask = np.zeros((height_px, width_px), dtype=bool)
    for left, top, width, height in boxes:
        x0 = (left - crop_left) / crop_w * width_px
        y0 = (top - crop_top) / crop_h * height_px
        x1 = (left + width - crop_left) / crop_w * width_px
        y1 = (top + height - crop_top) / crop_h * height_px
        xa, xb = int(np.clip(np.floor(x0), 0, width_px)), int(np.clip(np.ceil(x1), 0, width_px))
        ya, yb = int(np.clip(np.floor(y0), 0, height_px)), int(np.clip(np.ceil(y1), 0, height_px))
        mask[ya:yb, xa:xb] = True
    return mask


def measure_context_reliance(
    score_fn: ScoreFn,
    pixels: Sequence[np.ndarray],
    object_masks: Sequence[np.ndarray],
    tag_indices: Sequence[int] | np.ndarray,
    *,
    multilabel: bool,
    fill: Sequence[int] = (128, 128, 128),
    threshold: float = 0.5,
) -> list[TagReliance]:
    """Per tag (in order of first appearance), the figures described in the module docstring.

    pixels: N uint8 (H, W, 3) images as the model takes them (a (N, S, S, 3) array of crops
    will do); object_masks: N bool (H, W); tag_indices: (N,) the tag each image is measured for
    (an image with two tags appears twice). `score_fn` takes a list of such images and returns
    (N, T) probabilities. Images whose mask is empty or covers everything are skipped.
    `threshold`: the multilabel/detection "still predicted" cut; multiclass uses the top tag.
    """
    tags = np.asarray(tag_indices, dtype=np.int64)
    if tags.shape != (len(pixels),) or len(object_masks) != len(pixels):
        raise ValueError(
            f"object_masks and tag_indices must have one entry per image ({len(pixels)})."
        )
    kept: list[tuple[np.ndarray, np.ndarray, int]] = []
    for image, mask, tag in zip(pixels, object_masks, tags.tolist(), strict=True):
        image, mask = np.asarray(image), np.asarray(mask, dtype=bool)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"pixels must be uint8 (H, W, 3), got {image.dtype} {image.shape}.")
        if mask.shape != image.shape[:2]:
            raise ValueError(f"object_masks must match the images, got {mask.shape}.")
        if mask.any() and not mask.all():
            kept.append((image, mask, tag))
    if not kept:
        return []
    plain = [image for image, _, _ in kept]
    no_object = [paint(image, mask, fill) for image, mask, _ in kept]
    no_rest = [paint(image, ~mask, fill) for image, mask, _ in kept]
    scores = np.asarray(score_fn(plain + no_object + no_rest), dtype=np.float32)
    count = len(kept)
    kept_tags = np.array([tag for _, _, tag in kept])
    return [
        _summarise(
            tag,
            kept_tags == tag,
            scores[:count],
            scores[count : 2 * count],
            scores[2 * count :],
            multilabel,
            threshold,
        )
        for tag in dict.fromkeys(kept_tags.tolist())
    ]


def _summarise(
    tag: int,
    rows: np.ndarray,
    plain: np.ndarray,
    no_object: np.ndarray,
    no_rest: np.ndarray,
    multilabel: bool,
    threshold: float,
) -> TagReliance:
    def predicts(scores: np.ndarray) -> np.ndarray:
        if multilabel:
            return np.asarray(scores[rows, tag] >= threshold)
        return np.asarray(scores[rows].argmax(axis=1) == tag)

    # Survival counts only images the model got as the tag to begin with: a prediction it
    # never made cannot survive anything, and says nothing about what it relies on.
    was_predicted = predicts(plain)
    survives = predicts(no_object) & was_predicted
    predicted = int(was_predicted.sum())
    survival = float(survives.sum() / predicted) if predicted else 0.0
    score = float(plain[rows, tag].mean())
    without_object = float(no_object[rows, tag].mean())
    without_rest = float(no_rest[rows, tag].mean())
    return TagReliance(
        tag_index=tag,
        images=int(rows.sum()),
        score=score,
        score_without_object=without_object,
        score_without_surroundings=without_rest,
        predicted=predicted,
        survives_without_object=survival,
        is_background_suspect=bool(
            survival >= SURVIVAL_TO_FLAG
            and (score - without_object) <= (score - without_rest) + SAME_DROP
        ),
    )
