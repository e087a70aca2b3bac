"""CCNet: criss-cross attention on a dilated ResNet, fed the concatenated pair (chapter 9).

Source: Huang et al., "CCNet: Criss-Cross Attention for Semantic Segmentation", ICCV 2019
(the paper's reference [48]). Backbone: torchvision's ResNet-101 dilated to output stride 8
(``dilated_resnet.py``), as Huang et al.'s; the criss-cross attention is hand-written PyTorch
(no library has it).

Faithful to Huang et al.: the recurrent criss-cross attention module (RCCA) reduces layer4 to
C/4 channels with a 3x3 conv, applies ONE criss-cross attention R = 2 times (shared weights,
query/key C/8 channels, value C channels, output scale gamma initialised to 0), a 3x3 conv,
concatenates layer4 and reduces to 512 channels (3x3 conv, Dropout 0.1) before the 1x1
classifier; a deep-supervision head on layer3 is trained with weight 0.4.

GUESSED (the comparison does not say): the backbone depth. ResNet-101 (Huang et al.'s) is the
one that comes close to the paper's Table 3 (67.70 "MB", which matches millions of parameters:
66.4 M without the training-only deep-supervision head, 71.2 M with it; ResNet-50 gives
47.4 M / 52.2 M). How the template enters: stacked with the sample on channels, 6-channel
first conv.
Convention of the attention: each pixel attends to the H + W - 1 pixels of its row and column,
its own position counted once (in the row term; the column term masks it with -inf).
(chapter 9)
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
    fcn_head,
    upsample_to,
)
from bgnet_lite.methods.registry import register_method


class CrissCrossAttention(nn.Module):
    """Each pixel attends to its row and column; out = gamma * attended + x (chapter 9)."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = nn.Conv2d(channels, channels // 8, 1)
        self.key = nn.Conv2d(channels, channels // 8, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))  # starts as the identity (Huang et al.)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        height = features.shape[2]
        query, key = self.query(features), self.key(features)  # [N, C/8, H, W]
        value = self.value(features)  # [N, C, H, W]
        # 1. energies to the column (h') and the row (w') of every pixel (h, w)
        column_energy = torch.einsum("nchw,ncgw->nhwg", query, key)  # [N, H, W, H]
        row_energy = torch.einsum("nchw,nchv->nhwv", query, key)  # [N, H, W, W]
        # 2. the pixel itself is in both; count it once (in the row)
        itself = torch.eye(height, dtype=torch.bool, device=features.device)[:, None, :]
        column_energy = column_energy.masked_fill(itself, float("-inf"))
        # 3. one softmax over the H + W criss-cross positions
        attention = torch.softmax(torch.cat([column_energy, row_energy], dim=-1), dim=-1)
        column_attention, row_attention = attention.split([height, attention.shape[-1] - height],
                                                          dim=-1)
        # 4. attended values, then the residual
        attended = (torch.einsum("nhwg,ncgw->nchw", column_attention, value)
                    + torch.einsum("nhwv,nchv->nchw", row_attention, value))  # [N, C, H, W]
        return self.gamma * attended + features


class RecurrentCrissCross(nn.Module):
    """RCCA: 3x3 reduce, criss-cross attention applied ``recurrence`` times with shared
    weights (two passes reach every pixel), 3x3 conv, concatenate the input, 3x3 bottleneck
    (chapter 9)."""

    def __init__(self, in_channels: int, out_channels: int, recurrence: int):
        super().__init__()
        inter = in_channels // 4
        self.reduce = conv_bn_relu(in_channels, inter)
        self.attention = CrissCrossAttention(inter)
        self.after = conv_bn_relu(inter, inter)
        self.bottleneck = nn.Sequential(conv_bn_relu(in_channels + inter, out_channels),
                                        nn.Dropout2d(0.1))
        self.recurrence = recurrence

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        context = self.reduce(features)  # [N, C/4, h, w]
        for _ in range(self.recurrence):
            context = self.attention(context)
        context = self.after(context)
        return self.bottleneck(torch.cat([features, context], dim=1))  # [N, out, h, w]


@dataclass
class CCNetOptions:
    num_classes: int = 1  # logit channels K (1 = binary, else classes incl. background)
    in_channels: int = 3  # channels per image (1 or 3)
    weights: str = "auto"  # ImageNet backbone: "auto" | "imagenet" | "none"
    backbone: str = "resnet101"  # dilated torchvision ResNet (Huang et al.: ResNet-101)
    recurrence: int = 2  # R, passes of the criss-cross attention (Huang et al.: 2)
    head_channels: int = 512  # RCCA bottleneck width (Huang et al.: 512)
    aux_weight: float = 0.4  # deep-supervision loss weight on layer3 (Huang et al.: 0.4)


@register_method("ccnet", family="Attention-based",
                 citation="Huang et al., CCNet: Criss-Cross Attention for Semantic Segmentation, "
                          "ICCV 2019",
                 summary="recurrent criss-cross attention on a dilated ResNet-101, pair stacked "
                         "on channels",
                 options=CCNetOptions, paper_name="CCNet")
class CCNetPair(nn.Module):
    """CCNet on template ⊕ sample: ``forward(template, sample) -> [N, K, H, W]`` (chapter 9)."""

    def __init__(self, options: CCNetOptions):
        super().__init__()
        self.in_channels = options.in_channels
        self.encoder = DilatedResNet(options.backbone, options.weights, options.in_channels,
                                     output_stride=8)
        self.pretrained = self.encoder.pretrained
        self.rcca = RecurrentCrissCross(STAGE_CHANNELS[3], options.head_channels,
                                        options.recurrence)
        self.classifier = nn.Conv2d(options.head_channels, options.num_classes, 1)
        self.aux_weight = options.aux_weight
        self.aux_head = (fcn_head(STAGE_CHANNELS[2], 512, options.num_classes)
                         if options.aux_weight > 0 else None)

    def _logits(self, template, sample) -> tuple[torch.Tensor, list[torch.Tensor]]:
        common.check_pair(template, sample, self.in_channels)
        size = template.shape[-2:]
        # 1. dilated ResNet on the stacked pair
        feats = self.encoder(template, sample)  # layer4: [N, 2048, H/8, W/8]
        # 2. recurrent criss-cross attention, bottleneck, classifier
        logits = self.classifier(self.rcca(feats[3]))  # [N, K, H/8, W/8]
        # 3. back to full resolution
        return upsample_to(logits, size), feats

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Logits [N, K, H, W] (chapter 9)."""
        return self._logits(template, sample)[0]

    def training_losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the weighted deep-supervision loss on layer3 (chapter 9)."""
        logits, feats = self._logits(batch["template"], batch["sample"])
        if self.aux_head is None:
            return logits, {}
        aux_logits = upsample_to(self.aux_head(feats[2]), logits.shape[-2:])  # [N, K, H, W]
        return logits, {"aux": self.aux_weight * focal_loss(aux_logits, batch["mask"])}
