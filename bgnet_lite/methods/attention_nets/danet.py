"""DANet: position and channel attention on a dilated ResNet, fed the concatenated pair
(chapter 9).

Source: Fu et al., "Dual Attention Network for Scene Segmentation", CVPR 2019 (the paper's
Section 4 cites it as [49], which its reference list gives to Jin et al.'s DUNet).
Backbone: torchvision's ResNet-50 dilated to output stride 8 (``dilated_resnet.py``); both
attention modules are hand-written PyTorch (no library has them).

Faithful to Fu et al.: two branches on layer4, each a 3x3 conv to C/4 channels, the position
attention module (PAM: query/key C/8 channels, value C, softmax over all positions) or the
channel attention module (CAM: softmax of max(energy) - energy over channels), a 3x3 conv; the
branches are summed, Dropout 0.1, 1x1 classifier. Both attention outputs are scaled by a
learnable gamma initialised to 0. Each branch also has its own 1x1 classifier whose loss is
added with weight 1 during training, as in the authors' code.

GUESSED (the comparison does not say): ResNet-50 rather than Fu et al.'s ResNet-101 (an option):
it comes closest to the paper's Table 3 (49.63 "MB", which matches millions of parameters: we
have 47.4 M; ResNet-101 gives 66.4 M). How the template enters: stacked with the sample on
channels, 6-channel first conv. (chapter 9)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bgnet_lite.losses import focal_loss
from bgnet_lite.methods import common
from bgnet_lite.methods.attention_nets.dilated_resnet import (
    STAGE_CHANNELS,
    DilatedResNet,
    conv_bn_relu,
    upsample_to,
)
from bgnet_lite.methods.registry import register_method


class PositionAttention(nn.Module):
    """PAM: every position attends to every position; out = gamma * attended + x
    (chapter 9)."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = nn.Conv2d(channels, channels // 8, 1)
        self.key = nn.Conv2d(channels, channels // 8, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        query = self.query(features).flatten(2)  # [N, C/8, HW]
        key = self.key(features).flatten(2)  # [N, C/8, HW]
        value = self.value(features).flatten(2)  # [N, C, HW]
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # [N, HW (i), HW (j)]
        attended = value @ attention.transpose(1, 2)  # out_i = sum_j s_ij v_j: [N, C, HW]
        return self.gamma * attended.view_as(features) + features


class ChannelAttention(nn.Module):
    """CAM: every channel attends to every channel; out = gamma * attended + x (chapter 9)."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        flat = features.flatten(2)  # [N, C, HW]
        energy = flat @ flat.transpose(1, 2)  # [N, C, C]
        # the authors' stabilised form: max - energy (the softmax is shift-invariant, the sign
        # flip makes dissimilar channels weigh more)
        energy = energy.amax(dim=-1, keepdim=True) - energy
        attended = torch.softmax(energy, dim=-1) @ flat  # [N, C, HW]
        return self.gamma * attended.view_as(features) + features


class DualAttentionHead(nn.Module):
    """The two branches, summed; returns the fused and each branch's logits (chapter 9)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        inter = in_channels // 4
        self.position = nn.Sequential(conv_bn_relu(in_channels, inter), PositionAttention(inter),
                                      conv_bn_relu(inter, inter))
        self.channel = nn.Sequential(conv_bn_relu(in_channels, inter), ChannelAttention(),
                                     conv_bn_relu(inter, inter))
        self.classifiers = nn.ModuleList(
            nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(inter, num_classes, 1)) for _ in range(3))

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        position = self.position(features)  # [N, C/4, h, w]
        channel = self.channel(features)  # [N, C/4, h, w]
        return [classify(branch) for classify, branch
                in zip(self.classifiers, (position + channel, position, channel), strict=True)]


@dataclass
class DANetOptions:
    num_classes: int = 1  # logit channels K (1 = binary, else classes incl. background)
    in_channels: int = 3  # channels per image (1 or 3)
    weights: str = "auto"  # ImageNet backbone: "auto" | "imagenet" | "none"
    backbone: str = "resnet50"  # dilated torchvision ResNet: "resnet50" | "resnet101"
    branch_loss_weight: float = 1.0  # loss weight of each branch's own logits (Fu et al.: 1)


@register_method("danet", family="Attention-based",
                 citation="Fu et al., Dual Attention Network for Scene Segmentation, CVPR 2019",
                 summary="position + channel attention on a dilated ResNet-50, pair stacked "
                         "on channels",
                 options=DANetOptions, paper_name="DANet")
class DANetPair(nn.Module):
    """DANet on template ⊕ sample: ``forward(template, sample) -> [N, K, H, W]`` (chapter 9)."""

    def __init__(self, options: DANetOptions):
        super().__init__()
        self.in_channels = options.in_channels
        self.encoder = DilatedResNet(options.backbone, options.weights, options.in_channels,
                                     output_stride=8)
        self.pretrained = self.encoder.pretrained
        self.head = DualAttentionHead(STAGE_CHANNELS[3], options.num_classes)
        self.branch_loss_weight = options.branch_loss_weight

    def _all_logits(self, template, sample) -> list[torch.Tensor]:
        common.check_pair(template, sample, self.in_channels)
        size = template.shape[-2:]
        # 1. dilated ResNet on the stacked pair
        layer4 = self.encoder(template, sample)[3]  # [N, 2048, H/8, W/8]
        # 2. both attention branches: fused, position-only, channel-only logits
        branch_logits = self.head(layer4)  # 3 x [N, K, H/8, W/8]
        # 3. back to full resolution
        return [upsample_to(logits, size) for logits in branch_logits]

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Logits [N, K, H, W] of the summed branches (chapter 9)."""
        return self._all_logits(template, sample)[0]

    def training_losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Fused logits and the weighted losses of each branch's own logits (chapter 9)."""
        fused, position, channel = self._all_logits(batch["template"], batch["sample"])
        if self.branch_loss_weight == 0:
            return fused, {}
        weight, mask = self.branch_loss_weight, batch["mask"]
        return fused, {"position": weight * focal_loss(position, mask),
                       "channel": weight * focal_loss(channel, mask)}
