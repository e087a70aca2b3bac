"""The plain U-Net pieces the Siamese U-Net and DSSSNet share: a five-level double-convolution
encoder and an up-sampling decoder stage (chapter 9).

Source: Ronneberger et al., "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015, with batch normalisation after each 3x3 convolution (as every modern re-
implementation does).  Hand-written: smp's U-Net takes its encoders from classification
backbones and has no plain double-convolution encoder.  No pretrained weights exist for it.
"""

from __future__ import annotations

import torch
from torch import nn

from bgnet_lite.methods.bgnet.fusion import ConvBlock


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolution + BN + ReLU layers, U-Net's basic unit: BGNet's decoder block
    (chapters 6 and 9)."""
    return ConvBlock(in_channels, out_channels)


def level_widths(base_width: int) -> tuple[int, ...]:
    """Channels of the five encoder levels, doubling per level as in U-Net (chapter 9)."""
    return tuple(base_width * 2**level for level in range(5))


class UNetEncoder(nn.Module):
    """Five levels at strides 1, 2, 4, 8, 16; returns the list of their features (chapter 9)."""

    def __init__(self, in_channels: int, base_width: int):
        super().__init__()
        self.widths = widths = level_widths(base_width)
        self.levels = nn.ModuleList([double_conv(in_channels, widths[0])])
        for previous, width in zip(widths[:-1], widths[1:], strict=True):
            self.levels.append(nn.Sequential(nn.MaxPool2d(2), double_conv(previous, width)))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for level in self.levels:
            images = level(images)
            feats.append(images)  # [N, widths[i], H / 2^i, W / 2^i]
        return feats


class UpStage(nn.Module):
    """Transposed-convolution x2 up-sampling, concatenation with a skip, double convolution
    (one U-Net decoder stage; chapter 9)."""

    def __init__(self, deep_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(deep_channels, deep_channels // 2, 2, stride=2)
        self.conv = double_conv(deep_channels // 2 + skip_channels, out_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(deep)], dim=1))
