"""The classifier being fine-tuned (backbone + linear head), its frozen prefix and its loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import PooledEmbedding


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.frozen_blocks = 0  # stem + this many blocks run once, outside training (prefix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # type: ignore[no-any-return]

    def splittable_blocks(self) -> int:
        """How many blocks can be frozen as a prefix: those before the first pooled one (0 for a
        backbone of another shape)."""
        net = self.backbone
        if not isinstance(net, PooledEmbedding):
            return 0
        return min(net.pooled_blocks, default=len(net.blocks))

    def _split_net(self) -> PooledEmbedding:
        if not isinstance(self.backbone, PooledEmbedding):
            raise TypeError("Only a PooledEmbedding backbone splits into a prefix and the rest.")
        return self.backbone

    def freeze_prefix(self, blocks: int) -> None:
        """Freeze the stem and the first `blocks` blocks (computed by prefix(), not trained)."""
        if blocks > self.splittable_blocks():
            raise ValueError(f"At most {self.splittable_blocks()} blocks can be frozen.")
        self.frozen_blocks = blocks
        if blocks <= 0:
            return
        net = self._split_net()
        for module in (net.conv_stem, net.bn1, *net.blocks[:blocks]):
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised pixels -> the frozen blocks' output (the pixels when nothing is frozen)."""
        if self.frozen_blocks <= 0:
            return x
        net = self._split_net()
        x = net.stem(x)
        for block in net.blocks[: self.frozen_blocks]:
            x = block(x)
        return x

    def suffix(self, x: torch.Tensor) -> torch.Tensor:
        """prefix()'s output -> logits; suffix(prefix(x)) == forward(x)."""
        if self.frozen_blocks <= 0:
            return self.forward(x)
        features = self._split_net().features_from(x, self.frozen_blocks)
        return self.head(features)  # type: ignore[no-any-return]

    def train_with_frozen_norm(self) -> None:
        self.train()
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def classifier_loss(logits: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> torch.Tensor:
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, targets)
    labels = torch.where(
        targets.sum(dim=1) > 0,
        targets.argmax(dim=1),
        torch.full_like(targets[:, 0], targets.shape[1]).long(),
    )
    return F.cross_entropy(logits, labels)


def probabilities(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)[:, :-1]
