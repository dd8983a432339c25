"""Where the model looked: Grad-CAM on the backbone's last convolutional block.

Method (Selvaraju et al., "Grad-CAM", ICCV 2017): run the image to the last convolutional
feature map A (C, h, w), take the gradient of the chosen class's logit y_c with respect to A,
average it over the grid to get one weight per channel (alpha_k = mean_ij dy_c/dA_kij), and
keep ReLU(sum_k alpha_k A_k): the grid cells whose features pushed y_c up.

Our classifiers (quick and advanced) are a linear head on the global average pool of that map,
so dy_c/dA_kij = W_ck / (h*w) everywhere and Grad-CAM equals CAM (Zhou et al. 2016) exactly:
the backbone runs once without gradients and only the head is differentiated. A fine-tuned
(advanced) iteration uses its own backbone weights, the same way.

Limits, said where the map is shown: the grid is coarse (7x7 cells for Lite0's 224 px input,
32 px each), so the map says which region, not which pixels; the model sees only the centre
square of the image (shorter side, `resize_center_crop`), so the overlay marks the rest as
unseen; a map explains one score, not whether the label is right.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from .artifact import ClassifierArtifact
from .backbones import build_feature_extractor, get_backbone
from .preprocessing import resize_center_crop

ConvFeatures = Callable[[torch.Tensor], torch.Tensor]

# A perceptual ramp (dark blue -> teal -> yellow -> red) for the overlay; alpha rises with heat
# so the photograph shows through where the model did not look.
_RAMP = np.array([[48, 18, 120], [33, 145, 140], [253, 231, 37], [230, 60, 30]], dtype=np.float32)
_MAX_ALPHA = 170  # of 255: the strongest cell still lets the image show through
_UNSEEN_RGBA = (128, 128, 128, 110)  # outside the centre square the model never saw
_BOX_RGBA = (255, 255, 255, 230)  # the explained box of a detector's map


@dataclass(frozen=True)
class SaliencyMap:
    """Grad-CAM of one image.

    heat: (h, w) float32 in [0, 1] on the backbone's last conv grid (1 = the strongest cell;
    all zeros when nothing pushed the score up).
    tag_index: the explained column in the artifact's tag order; score: its probability.
    """

    heat: np.ndarray
    tag_index: int
    score: float


def grad_cam(
    conv_features: ConvFeatures,
    head_weight: torch.Tensor,
    head_bias: torch.Tensor,
    pixels: torch.Tensor,
    *,
    multilabel: bool,
    tag_index: int | None = None,
) -> SaliencyMap:
    """Grad-CAM of a linear head on the global-average-pooled last conv map.

    conv_features: normalised (1, 3, S, S) float32 -> (1, C, h, w), the backbone's last
    convolutional block (timm's `forward_features`). head_weight (K, C), head_bias (K,): for
    multiclass K = T + 1 (the last row is the never-reported background class), else K = T.
    tag_index: the column to explain; None explains the top reported prediction.
    """
    if pixels.ndim != 4 or pixels.shape[0] != 1 or pixels.shape[1] != 3:
        raise ValueError(f"pixels must be (1, 3, S, S), got {tuple(pixels.shape)}.")
    if head_weight.ndim != 2 or head_bias.shape != (head_weight.shape[0],):
        raise ValueError("head_weight must be (K, C) and head_bias (K,).")
    reported = head_weight.shape[0] - (0 if multilabel else 1)
    if reported < 1:
        raise ValueError("The head reports no tag.")
    if tag_index is not None and not 0 <= tag_index < reported:
        raise ValueError(f"tag_index must be in 0..{reported - 1}, got {tag_index}.")
    with torch.no_grad():
        features = conv_features(pixels.to(torch.float32))
    if features.ndim != 4 or features.shape[1] != head_weight.shape[1]:
        raise ValueError(
            f"conv_features gave {tuple(features.shape)}; the head needs (1, "
            f"{head_weight.shape[1]}, h, w)."
        )
    return _compute(features, head_weight, head_bias, multilabel, tag_index)


def _compute(
    features: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    multilabel: bool,
    tag_index: int | None,
) -> SaliencyMap:
    maps = features.detach().to(torch.float32).requires_grad_(True)
    with torch.enable_grad():
        logits = maps.mean(dim=(2, 3)) @ weight.to(torch.float32).T + bias.to(torch.float32)
        probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)[:, :-1]
        chosen = int(probs[0].argmax()) if tag_index is None else tag_index
        (gradient,) = torch.autograd.grad(logits[0, chosen], maps)
    alpha = gradient.mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1)
    cam = torch.relu((alpha * maps.detach()).sum(dim=1))[0]  # (h, w)
    peak = float(cam.max())
    heat = (cam / peak) if peak > 0 else torch.zeros_like(cam)
    return SaliencyMap(
        heat=heat.numpy().astype(np.float32),
        tag_index=chosen,
        score=float(probs[0, chosen].detach()),
    )


def upsample_heat(heat: np.ndarray, size_px: int) -> np.ndarray:
    """(h, w) heat -> (size_px, size_px) float32 by bilinear interpolation (cell centres kept)."""
    if heat.ndim != 2:
        raise ValueError(f"heat must be (h, w), got {heat.shape}.")
    image = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F")
    resized = image.resize((size_px, size_px), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32).clip(0.0, 1.0)


def centre_square(width_px: int, height_px: int) -> tuple[int, int, int]:
    """(left, top, side) of the square `resize_center_crop` feeds the model, in image pixels."""
    side = min(width_px, height_px)
    return (width_px - side) // 2, (height_px - side) // 2, side


def overlay_png(
    heat: np.ndarray, width_px: int, height_px: int, *, max_side_px: int = 512
) -> bytes:
    """A semi-transparent RGBA PNG of `heat` laid over an image of (width_px, height_px).

    The PNG has the image's aspect ratio (longer side at most `max_side_px`) so the browser can
    stretch it over the picture; the heat fills the centre square the model saw, and the
    strips outside it are a flat translucent grey (unseen).
    """
    if width_px < 1 or height_px < 1:
        raise ValueError("The image size must be positive.")
    scale = min(1.0, max_side_px / max(width_px, height_px))
    out_w, out_h = max(1, round(width_px * scale)), max(1, round(height_px * scale))
    left, top, side = centre_square(width_px, height_px)
    side_px = max(1, round(side * scale))
    canvas = np.zeros((out_h, out_w, 4), dtype=np.uint8)
    canvas[:, :] = _UNSEEN_RGBA
    square = _colour(upsample_heat(heat, side_px))
    x0 = min(round(left * scale), out_w - side_px)
    y0 = min(round(top * scale), out_h - side_px)
    canvas[y0 : y0 + side_px, x0 : x0 + side_px] = square[: out_h - y0, : out_w - x0]
    buffer = io.BytesIO()
    Image.fromarray(canvas, mode="RGBA").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def whole_image_overlay_png(
    heat: np.ndarray,
    width_px: int,
    height_px: int,
    *,
    box: tuple[float, float, float, float] | None = None,
    max_side_px: int = 512,
) -> bytes:
    """Like `overlay_png` for a model that sees the whole image (a detector): `heat` (any
    h x w over the whole image) is stretched over all of it, and `box` (left, top, width,
    height fractions), the explained box, is outlined so the map reads against it."""
    if width_px < 1 or height_px < 1:
        raise ValueError("The image size must be positive.")
    if heat.ndim != 2:
        raise ValueError(f"heat must be (h, w), got {heat.shape}.")
    scale = min(1.0, max_side_px / max(width_px, height_px))
    out_w, out_h = max(1, round(width_px * scale)), max(1, round(height_px * scale))
    resized = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F").resize(
        (out_w, out_h), Image.Resampling.BILINEAR
    )
    canvas = Image.fromarray(_colour(np.asarray(resized, dtype=np.float32).clip(0.0, 1.0)))
    if box is not None:
        left, top, box_w, box_h = box
        outline = [
            round(left * out_w),
            round(top * out_h),
            min(out_w - 1, round((left + box_w) * out_w)),
            min(out_h - 1, round((top + box_h) * out_h)),
        ]
        ImageDraw.Draw(canvas).rectangle(outline, outline=_BOX_RGBA, width=max(2, out_w // 200))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _colour(heat: np.ndarray) -> np.ndarray:
    """(S, S) heat in [0, 1] -> (S, S, 4) uint8 RGBA along _RAMP, alpha growing with heat."""
    position = heat * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    fraction = (position - low)[..., None]
    rgb = _RAMP[low] * (1 - fraction) + _RAMP[low + 1] * fraction
    # Cells below a fifth of the peak stay clear: a faint wash everywhere hides the picture.
    alpha = (np.clip((heat - 0.2) / 0.8, 0.0, 1.0) ** 0.8) * _MAX_ALPHA
    return np.concatenate([rgb, alpha[..., None]], axis=-1).round().astype(np.uint8)


def top_region(heat: np.ndarray, size_px: int, *, area_fraction: float = 0.25) -> np.ndarray:
    """Boolean (size_px, size_px) mask of the hottest `area_fraction` of the upsampled heat:
    the "object" region context reliance masks. All False when the heat is all zeros."""
    if not 0.0 < area_fraction < 1.0:
        raise ValueError("area_fraction must be between 0 and 1.")
    full = upsample_heat(heat, size_px)
    if float(full.max()) <= 0.0:
        return np.zeros((size_px, size_px), dtype=bool)
    cut = float(np.quantile(full, 1.0 - area_fraction))
    mask: np.ndarray = full >= cut if cut > 0 else full > 0
    return mask


@dataclass(frozen=True)
class SaliencyModel:
    """A classifier split where Grad-CAM needs it: the backbone up to its last conv block, and
    the linear head on the pooled map. Built once per artifact; calls mutate nothing."""

    conv_features: ConvFeatures
    head_weight: torch.Tensor  # (K, C)
    head_bias: torch.Tensor  # (K,)
    multilabel: bool
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def normalise(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 (N, S, S, 3) -> normalised float32 (N, 3, S, S)."""
        batch = torch.tensor(np.asarray(pixels)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (batch - mean) / std

    def explain(self, pixels: np.ndarray, *, tag_index: int | None = None) -> SaliencyMap:
        """Grad-CAM of one uint8 (S, S, 3) crop (see `grad_cam`)."""
        return grad_cam(
            self.conv_features,
            self.head_weight,
            self.head_bias,
            self.normalise(pixels[None]),
            multilabel=self.multilabel,
            tag_index=tag_index,
        )

    def probabilities(self, pixels: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Reported tag probabilities (N, T) float32 of uint8 (N, S, S, 3) crops."""
        rows: list[np.ndarray] = []
        with torch.no_grad():
            for start in range(0, len(pixels), batch_size):
                maps = self.conv_features(self.normalise(pixels[start : start + batch_size]))
                logits = maps.mean(dim=(2, 3)) @ self.head_weight.T + self.head_bias
                probs = (
                    torch.sigmoid(logits)
                    if self.multilabel
                    else torch.softmax(logits, dim=1)[:, :-1]
                )
                rows.append(probs.numpy().astype(np.float32))
        reported = self.head_weight.shape[0] - (0 if self.multilabel else 1)
        return np.concatenate(rows) if rows else np.zeros((0, reported), dtype=np.float32)


def saliency_model(artifact: ClassifierArtifact) -> SaliencyModel:
    """The SaliencyModel of a trained classifier artifact (quick: the stock pretrained backbone;
    advanced: its fine-tuned weights), built in eager PyTorch (ONNX engines give no maps)."""
    spec = get_backbone(artifact.backbone)
    extractor = build_feature_extractor(artifact.backbone)
    if artifact.backbone_state is not None:
        extractor.load_state_dict(artifact.backbone_state)
    extractor.eval().requires_grad_(False)
    forward_features = getattr(extractor, "forward_features", None)
    if forward_features is None:
        raise TypeError(f"Backbone {artifact.backbone!r} exposes no last convolutional block.")
    return SaliencyModel(
        conv_features=forward_features,
        head_weight=artifact.head_weight.to(torch.float32),
        head_bias=artifact.head_bias.to(torch.float32),
        multilabel=artifact.multilabel,
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
    )


def model_crop(image: Image.Image, size_px: int) -> np.ndarray:
    """The uint8 (S, S, 3) centre crop the classifier sees (the same function prediction uses)."""
    return resize_center_crop(image.convert("RGB"), size_px)
