"""DUNet: the data-dependent upsampling (DUpsampling) decoder, fed the concatenated pair
(chapter 9).

OUR READING of the paper's "DUNet": the paper lists it with CCNet and DANet as a "classical
attention mechanism method" and cites it with CCNet's reference [48]; its reference list has
Jin et al.'s deformable U-Net (retinal vessels) as [49], next to it. We read "DUNet" as the
network of Tian et al., "Decoders Matter for Semantic Segmentation: Data-Dependent Decoding
Enables Flexible Feature Aggregation", CVPR 2019, which the common PyTorch model zoos that also
hold CCNet and DANet name "DUNet". The paper's Table 3 supports this reading: 31.48 "MB" (which
matches millions of parameters) against 31.5 M for the network below.

Source: Tian et al. 2019. Backbone: torchvision's ResNet-50 (``dilated_resnet.py``) at output
stride r = 16 (layer4 dilated); DUpsampling hand-written (a 1x1 conv and a rearrangement).

Faithful to Tian et al.: features of several levels are downsampled to the lowest resolution and
fused (their "flexible aggregation"); after two 3x3 convs, DUpsampling predicts, for every
low-resolution pixel, the K x r x r logits of its r x r patch (a 1x1 conv to K r^2 channels,
then a pixel-shuffle rearrangement), and the logits are divided by a learnable temperature T
("adaptive-temperature softmax", T initialised to 1).

GUESSED: the output stride r = 16 (DUpsampling is meant to allow a coarse encoder output,
no dilation or a dilated layer4 only; an option), the fused levels (layer2 and layer3, each
reduced to 48 channels), the decoder width 256, and the auxiliary FCN head on layer3 (weight
0.4) that the model-zoo implementations add (with them we have 31.5 M parameters, the paper's
Table 3 says 31.48 "MB", i.e. millions); the reconstruction matrix W is learned end to end
(Tian et al. also pre-compute it from the label patches by a linear reconstruction; we do
not); the input is replicate-padded to a multiple of r and the logits cropped back. How the
template enters: stacked with the sample on channels, 6-channel first conv. (chapter 9)
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


def patches_to_image(patch_logits: torch.Tensor, ratio: int) -> torch.Tensor:
    """[N, K r^2, h, w] -> [N, K, h r, w r]: channel k r^2 + i r + j of a low-resolution
    pixel becomes class k at offset (i, j) of its r x r patch (chapter 9)."""
    batch, channels, height, width = patch_logits.shape
    classes = channels // (ratio * ratio)
    patches = patch_logits.view(batch, classes, ratio, ratio, height, width)  # [N, K, i, j, h, w]
    return patches.permute(0, 1, 4, 2, 5, 3).reshape(batch, classes, height * ratio,
                                                      width * ratio)


class DUpsampling(nn.Module):
    """Data-dependent upsampling: a 1x1 conv (the learned reconstruction W) predicts each
    pixel's r x r patch of K logits (chapter 9)."""

    def __init__(self, in_channels: int, num_classes: int, ratio: int):
        super().__init__()
        self.ratio = ratio
        self.reconstruct = nn.Conv2d(in_channels, num_classes * ratio * ratio, 1, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return patches_to_image(self.reconstruct(features), self.ratio)  # [N, K, h r, w r]


class LevelFusion(nn.Module):
    """Lower levels reduced to 48 channels, resized to layer4's size, concatenated with it,
    two 3x3 convs (chapter 9)."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.reduce2 = conv_bn_relu(STAGE_CHANNELS[1], 48, kernel_size=1)
        self.reduce3 = conv_bn_relu(STAGE_CHANNELS[2], 48, kernel_size=1)
        self.fuse = nn.Sequential(conv_bn_relu(STAGE_CHANNELS[3] + 96, out_channels),
                                  conv_bn_relu(out_channels, out_channels))

    def forward(self, layer2, layer3, layer4) -> torch.Tensor:
        size = layer4.shape[-2:]
        lower = [nn.functional.interpolate(reduce(feats), size=size, mode="bilinear",
                                           align_corners=False)
                 for reduce, feats in ((self.reduce2, layer2), (self.reduce3, layer3))]
        return self.fuse(torch.cat([layer4, *lower], dim=1))  # [N, out, H/r, W/r]


@dataclass
class DUNetOptions:
    num_classes: int = 1  # logit channels K (1 = binary, else classes incl. background)
    in_channels: int = 3  # channels per image (1 or 3)
    weights: str = "auto"  # ImageNet backbone: "auto" | "imagenet" | "none"
    backbone: str = "resnet50"  # torchvision ResNet: "resnet50" (Tian et al.) | "resnet101"
    output_stride: int = 16  # r, the DUpsampling ratio (Tian et al.: 16 or 32; here 8, 16, 32)
    decoder_channels: int = 256  # width of the fused features (guessed)
    aux_weight: float = 0.4  # loss weight of the auxiliary head on layer3 (guessed; 0 = none)


@register_method("dunet", family="Attention-based",
                 citation="Tian et al., Decoders Matter for Semantic Segmentation: "
                          "Data-Dependent Decoding Enables Flexible Feature Aggregation, "
                          "CVPR 2019 (our reading of the paper's DUNet)",
                 summary="DUpsampling decoder on a ResNet-50 (output stride 16), pair stacked "
                         "on channels",
                 options=DUNetOptions, paper_name="DUNet")
class DUNetPair(nn.Module):
    """DUNet on template ⊕ sample: ``forward(template, sample) -> [N, K, H, W]`` (chapter 9)."""

    def __init__(self, options: DUNetOptions):
        super().__init__()
        self.in_channels = options.in_channels
        self.encoder = DilatedResNet(options.backbone, options.weights, options.in_channels,
                                     output_stride=options.output_stride)
        self.pretrained = self.encoder.pretrained
        self.fusion = LevelFusion(options.decoder_channels)
        self.dupsample = DUpsampling(options.decoder_channels, options.num_classes,
                                     options.output_stride)
        self.temperature = nn.Parameter(torch.ones(1))
        self.aux_weight = options.aux_weight
        self.aux_head = (fcn_head(STAGE_CHANNELS[2], 256, options.num_classes)
                         if options.aux_weight > 0 else None)

    def _logits(self, template, sample) -> tuple[torch.Tensor, list[torch.Tensor]]:
        common.check_pair(template, sample, self.in_channels)
        # 1. pad so that r x the low-resolution size is the padded input size
        multiple = self.encoder.output_stride
        template, size = common.pad_to_multiple(template, multiple)
        sample, _ = common.pad_to_multiple(sample, multiple)
        # 2. ResNet on the stacked pair, levels fused at the lowest resolution
        feats = self.encoder(template, sample)
        fused = self.fusion(*feats[1:])  # [N, 256, H/r, W/r]
        # 3. data-dependent upsampling, adaptive temperature
        logits = self.dupsample(fused) / self.temperature  # [N, K, H, W] (padded)
        return common.crop(logits, size), feats

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Logits [N, K, H, W] (chapter 9)."""
        return self._logits(template, sample)[0]

    def training_losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the weighted auxiliary loss on layer3 (chapter 9)."""
        logits, feats = self._logits(batch["template"], batch["sample"])
        if self.aux_head is None:
            return logits, {}
        size = [side * self.encoder.output_stride for side in feats[3].shape[-2:]]
        aux_logits = common.crop(upsample_to(self.aux_head(feats[2]), size), logits.shape[-2:])
        return logits, {"aux": self.aux_weight * focal_loss(aux_logits, batch["mask"])}
