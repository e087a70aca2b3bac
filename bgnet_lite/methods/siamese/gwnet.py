"""GWNet: Siamese ResNet-34, self- minus cross-attention at the bottleneck (DAM), and recurrent
residual attention masks on the skip differences (RRAM) (chapter 9).

Source: Niu et al., "A generalized well neural network for surface defect segmentation in
Optical Communication Devices via Template-Testing comparison", Computers in Industry 151
(2023); read from the authors' public code (github.com/ntongzhi/GWNet, ``model.py`` and
``attention_model.py``), rewritten compactly, not copied.  Library: torchvision's ResNet-34
(the encoder, ImageNet weights under ``common``'s policy) and its ``BasicBlock``.

What the authors' code does and we keep:

* One ResNet-34 (stem, layers 1-4) runs on both images; five maps at strides 2 .. 32.
* Bottleneck (DAM): one non-local (position) attention module, used twice with the same
  weights: ``attend(q=s, k=s, v=s) - attend(q=s, k=t, v=t)`` with ``attend(q, k, v) = V(v)
  softmax(Q(q)^T K(k) / sqrt(C))^T + v``, queries and keys reduced to C/32 channels, no
  position encoding (the point: attention ignores where the background moved).
* Decoder (RRAM): at each of four stages the deeper map is up-sampled (2x2 transposed conv),
  a residual block reduces it to 16 channels, and one small residual U-Net shared by all
  stages (hence "recurrent") turns that into a sigmoid mask; from the second stage on the mask
  is multiplied by ``log2(1 + up(previous mask))``.  The skip is ``(sample - template) * mask``,
  concatenated with the up-sampled map and fused by a double convolution.  A last transposed
  conv, double convolution and 1x1 convolution give full-resolution logits.

What the code leaves open and we GUESSED, and what differs:

* Which input is the query: the code's ``forward(x1, x2)`` does not name them; we take the
  sample as x1 (queries, the minuend of the skip differences), so both read "sample minus what
  the template explains".
* The attention scale: the code divides by sqrt(512) (its only use is at 512 channels); we
  divide by sqrt(C), the same there.
* Template and sample go through the encoder as one stacked batch (the code runs them one
  after the other): in training BatchNorm statistics are pooled over both images.
* Inputs are ImageNet-normalised (greyscale repeated to RGB) because the encoder is
  ImageNet-pretrained; the code feeds raw images.  Convolutions of the double convolutions
  have no bias (each is followed by BatchNorm); sizes come from padding the input to a
  multiple of 32 instead of padding each up-sampled map.
* Params: 100.8 MiB for K = 1 (26.4 million parameters, the authors' code 26.45 million).
  The paper's Table 3 lists 26.54 "MB": that matches the count in millions, not MiB of
  float32, unlike its BGNet row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from bgnet_lite.methods import common
from bgnet_lite.methods.registry import register_method
from bgnet_lite.methods.siamese.siamese_unet import encode_pair
from bgnet_lite.methods.siamese.unet_parts import double_conv

ENCODER_CHANNELS = (64, 64, 128, 256, 512)  # ResNet-34 maps at strides 2, 4, 8, 16, 32
MASK_CHANNELS = 16  # the mask network's width (every stage reduces to it)


@dataclass
class GWNetOptions:
    num_classes: int = 1  # logit channels K (1 = binary, else classes incl. background)
    in_channels: int = 3  # channels per image (1 or 3)
    weights: str = "auto"  # ImageNet ResNet-34: "auto" | "imagenet" | "none"
    attention_reduction: int = 32  # query/key channels = C / reduction (authors' code: 32)


class SiameseResNet34(nn.Module):
    """torchvision's ResNet-34 returning its five maps, strides 2 .. 32 (chapter 9)."""

    def __init__(self, in_channels: int, weights: str):
        super().__init__()
        self.normalize = common.ImageNetNormalize(in_channels)
        resnet = torchvision.models.resnet34(weights=None)
        state = common.torchvision_state("resnet34", weights)
        if state is not None:
            resnet.load_state_dict(state)
        self.pretrained = state is not None
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu)
        self.layers = nn.ModuleList([
            nn.Sequential(resnet.maxpool, resnet.layer1), resnet.layer2, resnet.layer3,
            resnet.layer4])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(self.normalize(images))]  # [N, 64, H/2, W/2]
        for layer in self.layers:
            feats.append(layer(feats[-1]))  # [N, C_i, H/2^(i+1), W/2^(i+1)]
        return feats


class NonLocalAttention(nn.Module):
    """Non-local (position) attention with a residual: ``V(v) softmax(Q(q)^T K(k) /
    sqrt(C))^T + v`` over all positions; q = k = v is self-attention, k = v from the other
    image is cross-attention (DAM; chapter 9)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.query = nn.Conv2d(channels, channels // reduction, 1)
        self.key = nn.Conv2d(channels, channels // reduction, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.scale = 1 / math.sqrt(channels)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = query.shape
        queries = self.query(query).flatten(2).transpose(1, 2)  # [N, HW, C/r]
        keys = self.key(key).flatten(2)  # [N, C/r, HW]
        weights = torch.softmax(queries @ keys * self.scale, dim=-1)  # [N, HW_q, HW_k]
        values = self.value(value).flatten(2)  # [N, C, HW_k]
        attended = (values @ weights.transpose(1, 2)).view(batch, channels, height, width)
        return attended + value


def residual_block(in_channels: int, out_channels: int) -> BasicBlock:
    """torchvision's ResNet basic block, with a 1x1 projection when widths differ (chapter 9)."""
    projection = None
    if in_channels != out_channels:
        projection = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                   nn.BatchNorm2d(out_channels))
    return BasicBlock(in_channels, out_channels, downsample=projection)


class MaskNet(nn.Module):
    """RRAM's mask network, one instance shared by every decoder stage: a one-level residual
    U-Net from 16 channels to a sigmoid mask [N, 1, h, w] (chapter 9)."""

    def __init__(self, channels: int = MASK_CHANNELS):
        super().__init__()
        self.down = nn.Sequential(nn.MaxPool2d(2), residual_block(channels, 2 * channels))
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.fuse = residual_block(3 * channels, channels)
        self.to_mask = nn.Conv2d(channels, 1, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        coarse = self.up(self.down(feats))  # [N, 2c, h, w]
        return torch.sigmoid(self.to_mask(self.fuse(torch.cat([feats, coarse], dim=1))))


class MaskedUpStage(nn.Module):
    """One decoder stage: up-sample, mask the skip difference, fuse (RRAM; chapter 9)."""

    def __init__(self, deep_channels: int, skip_channels: int, out_channels: int,
                 mask_net: MaskNet):
        super().__init__()
        self.up = nn.ConvTranspose2d(deep_channels, deep_channels, 2, stride=2)
        self.to_mask_input = residual_block(deep_channels, MASK_CHANNELS)
        self.mask_net = mask_net
        self.previous_up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.fuse = double_conv(skip_channels + deep_channels, out_channels)

    def forward(self, deep: torch.Tensor, skip_difference: torch.Tensor,
                previous_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        deep = self.up(deep)  # [N, C_deep, h, w]
        mask = self.mask_net(self.to_mask_input(deep))  # [N, 1, h, w]
        if previous_mask is not None:  # the recurrence: a coarser mask re-weights this one
            mask = torch.log2(self.previous_up(previous_mask) + 1) * mask
        masked = skip_difference * mask  # noise of the difference shut by the mask
        return self.fuse(torch.cat([masked, deep], dim=1)), mask


@register_method("gwnet", family="Background generalization",
                 citation="Niu et al., A generalized well neural network for surface defect "
                          "segmentation in Optical Communication Devices via Template-Testing "
                          "comparison, Computers in Industry 2023",
                 summary="Siamese ResNet-34; self- minus cross-attention bottleneck; recurrent "
                         "residual attention masks on skip differences",
                 options=GWNetOptions, paper_name="GWNet")
class GWNet(nn.Module):
    """GWNet (chapter 9): ``forward(template, sample) -> logits [N, K, H, W]``."""

    def __init__(self, options: GWNetOptions):
        super().__init__()
        self.in_channels = options.in_channels
        self.encoder = SiameseResNet34(options.in_channels, options.weights)
        self.pretrained = self.encoder.pretrained
        self.attention = NonLocalAttention(ENCODER_CHANNELS[-1], options.attention_reduction)
        self.mask_net = MaskNet()
        self.up_stages = nn.ModuleList(
            MaskedUpStage(ENCODER_CHANNELS[level + 1], ENCODER_CHANNELS[level],
                          ENCODER_CHANNELS[level], self.mask_net)
            for level in reversed(range(4)))
        self.last_up = nn.ConvTranspose2d(ENCODER_CHANNELS[0], ENCODER_CHANNELS[0], 2, stride=2)
        self.last_conv = double_conv(ENCODER_CHANNELS[0], ENCODER_CHANNELS[0])
        self.head = nn.Conv2d(ENCODER_CHANNELS[0], options.num_classes, 1)

    def bottleneck(self, template_deep: torch.Tensor, sample_deep: torch.Tensor) -> torch.Tensor:
        """DAM: the sample's self-attention minus its cross-attention to the template, one
        attention module for both (chapter 9).  [N, 512, H/32, W/32]"""
        return (self.attention(sample_deep, sample_deep, sample_deep)
                - self.attention(sample_deep, template_deep, template_deep))

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        common.check_pair(template, sample, self.in_channels)
        # 1. pad to a multiple of 32 and encode both images with the one ResNet-34
        template, size = common.pad_to_multiple(template, 32)
        sample, _ = common.pad_to_multiple(sample, 32)
        template_feats, sample_feats = encode_pair(self.encoder, template, sample)
        # 2. bottleneck: self- minus cross-attention  # [N, 512, H/32, W/32]
        decoded = self.bottleneck(template_feats[-1], sample_feats[-1])
        # 3. four masked stages over the skip differences, H/16 .. H/2
        mask = None
        for stage, template_skip, sample_skip in zip(
                self.up_stages, reversed(template_feats[:-1]), reversed(sample_feats[:-1]),
                strict=True):
            decoded, mask = stage(decoded, sample_skip - template_skip, mask)
        # 4. back to full resolution and per-class logits  # [N, K, H, W]
        decoded = self.last_conv(self.last_up(decoded))  # [N, 64, H, W]
        return common.crop(self.head(decoded), size)
