"""Multi-scale feature fusion: a U-Net-like decoder over the five difference maps (chapter 6).

Sec. 3.5 of the paper fuses the (matched-)subtracted maps of all five scales "in a manner
similar to U-Net": start from the deepest map, upsample, concatenate the next shallower map
(skip connection), convolve, and repeat up to 1/2; a last upsampling to the image size and a
1x1 convolution give one logit map per class (computed in the cheaper, equal order: 1x1
convolution at 1/2, then upsampling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bgnet_lite.methods.bgnet.backbone import BACKBONE_CHANNELS


class ConvBlock(nn.Sequential):
    """(3x3 conv, BatchNorm, ReLU) twice, the U-Net decoder block (chapter 6)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class FusionDecoder(nn.Module):
    """Fuse five maps (shallow to deep) into logits [N, K, H, W] (chapter 6).

    channels: channels of the five maps, 1/2 .. 1/32. num_classes: 1 = binary (one logit),
    K >= 2 = K classes including background. Each step upsamples the running map x2
    (bilinear, to the skip's exact size so odd image sizes work), concatenates the skip and
    applies a ``ConvBlock``.  decoder_channels: the output channels of the four blocks, deep
    (1/16) to shallow (1/2); None = each skip's channel count (256, 128, 64, 64), the classic
    U-Net choice.
    """

    def __init__(self, channels: tuple[int, ...] = BACKBONE_CHANNELS, num_classes: int = 1,
                 decoder_channels: tuple[int, ...] | None = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.channels = tuple(channels)
        skips = self.channels[-2::-1]  # (256, 128, 64, 64)
        outputs = skips if decoder_channels is None else tuple(decoder_channels)
        if len(outputs) != len(skips) or min(outputs) < 1:
            raise ValueError(f"decoder_channels needs {len(skips)} positive widths (1/16 .. 1/2), "
                             f"got {decoder_channels}")
        running = (self.channels[-1],) + outputs[:-1]  # input width of each block
        self.blocks = nn.ModuleList(
            ConvBlock(run + skip, out)
            for run, skip, out in zip(running, skips, outputs, strict=True)
        )
        self.head = nn.Conv2d(outputs[-1], num_classes, kernel_size=1)

    def forward(
        self, feats: list[torch.Tensor], output_size: tuple[int, int]
    ) -> torch.Tensor:
        """feats: maps [N, C_i, H_i, W_i] shallow (1/2) to deep (1/32) -> [N, K, *output_size]."""
        if len(feats) != len(self.channels):
            raise ValueError(f"expected {len(self.channels)} feature maps, got {len(feats)}")
        running = feats[-1]  # [N, 512, H/32, W/32]
        for block, skip in zip(self.blocks, feats[-2::-1], strict=True):
            running = F.interpolate(
                running, size=skip.shape[-2:], mode="bilinear", align_corners=False
            )  # [N, C_run, H_skip, W_skip]
            running = block(torch.cat([running, skip], dim=1))  # [N, C_out, H_skip, W_skip]
        logits = self.head(running)  # [N, K, H/2, W/2]
        # 1x1 conv and bilinear upsampling are both linear per pixel, so they commute: applying
        # the head first gives the same logits without a full-resolution feature map.
        return F.interpolate(
            logits, size=tuple(output_size), mode="bilinear", align_corners=False
        )  # [N, K, H, W]
