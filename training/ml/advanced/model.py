"""The classifier being fine-tuned (backbone + linear head), its frozen prefix and its loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.frozen_blocks = 0  # stem + this many blocks run once, outside training (prefix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # type: ignore[no-any-return]

    def splittable_blocks(self) -> int:
        """How many blocks can be frozen as a prefix (0 for a backbone of another shape)."""
        net = self.backbone
        parts = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head")
        if not all(hasattr(net, part) for part in parts):
            return 0
        return len(net.blocks)  # type: ignore[arg-type]

    def freeze_prefix(self, blocks: int) -> None:
        """Freeze the stem and the first `blocks` blocks (computed by prefix(), not trained)."""
        self.frozen_blocks = blocks
        if blocks <= 0:
            return
        net = self.backbone
        for module in (net.conv_stem, net.bn1, *net.blocks[:blocks]):  # type: ignore[index]
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised pixels -> the frozen blocks' output (the pixels when nothing is frozen)."""
        if self.frozen_blocks <= 0:
            return x
        net = self.backbone
        x = net.bn1(net.conv_stem(x))  # type: ignore[operator]
        for block in net.blocks[: self.frozen_blocks]:  # type: ignore[index]
            x = block(x)
        return x

    def suffix(self, x: torch.Tensor) -> torch.Tensor:
        """prefix()'s output -> logits; suffix(prefix(x)) == forward(x)."""
        if self.frozen_blocks <= 0:
            return self.forward(x)
        net = self.backbone
        for block in net.blocks[self.frozen_blocks :]:  # type: ignore[index]
            x = block(x)
        x = net.bn2(net.conv_head(x))  # type: ignore[operator]
        return self.head(net.forward_head(x))  # type: ignore[operator,no-any-return]

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
