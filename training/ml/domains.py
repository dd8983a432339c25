"""Which backbone each project domain trains on: a table the web process reads when it starts
a training, so it lives apart from training.ml.backbones (which imports torch and timm: 10-20 s
of a busy 2-core host's time in the request that starts the first training).

Both train on the `-levels` embedding (blocks 4-6 pooled with the last map; see
training.ml.backbones). Iterations trained before keep the plain backbone they name."""

from __future__ import annotations

BACKBONE_FOR_DOMAIN: dict[str, str] = {
    "general_compact": "lite0-levels",
    "general": "lite2-levels",
}
