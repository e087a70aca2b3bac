"""SegNet on the template-sample stack: Badrinarayanan, Kendall, Cipolla, "SegNet: A Deep
Convolutional Encoder-Decoder Architecture for Image Segmentation", IEEE TPAMI 2017
(chapter 9).

The encoder is torchvision's VGG16-BN convolutions (13 conv + BN + ReLU in five blocks); each
2x2 max-pooling keeps its argmax indices, and the mirrored decoder (13 conv + BN + ReLU)
upsamples with ``nn.MaxUnpool2d`` at exactly those positions (no learned upsampling, no skip
features).  Template and sample are stacked on channels (6 for RGB) through a widened first
convolution (``common.widen_first_conv``).

GUESSED (the BGNet paper gives only "SegNet" and Params 40.47 MB): the decoder's last
convolution gives the K logits directly (3x3, no BN, as the authors' Caffe model
conv1_1_D; the soft-max is in the loss); the full VGG16 widths, so 112 MB of parameters
against Table 3's 40.47 MB (no width of the published SegNet gives that figure).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from bgnet_lite.methods import common
from bgnet_lite.methods.registry import register_method

# VGG16's five blocks: (input channels, output channels, convolutions); the decoder mirrors them
VGG16_BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))


@dataclass
class SegNetOptions:
    num_classes: int = 1  # logit channels K (1 = binary, else classes incl. background)
    in_channels: int = 3  # channels per image (1 or 3)
    weights: str = "auto"  # ImageNet VGG16-BN encoder: "auto" | "imagenet" | "none"


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]


def vgg16_bn_blocks(weights: str) -> tuple[nn.ModuleList, dict | None]:
    """torchvision's VGG16-BN convolutions split at its five max-poolings (which SegNet
    replaces by index-keeping ones), with the ImageNet weights when asked (chapter 9)."""
    features = torchvision.models.vgg16_bn(weights=None).features
    state = common.torchvision_state("vgg16_bn", weights)
    if state is not None:
        features.load_state_dict({key.removeprefix("features."): value
                                  for key, value in state.items()
                                  if key.startswith("features.")})
    blocks, current = nn.ModuleList(), []
    for layer in features:
        if isinstance(layer, nn.MaxPool2d):
            blocks.append(nn.Sequential(*current))
            current = []
        else:
            current.append(layer)
    return blocks, state


def decoder_block(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    """The mirror of a VGG block: ``convs`` 3x3 conv + BN + ReLU, the last one narrowing to
    ``out_channels`` (chapter 9)."""
    layers = []
    for index in range(convs):
        layers += conv_bn_relu(in_channels, out_channels if index == convs - 1 else in_channels)
    return nn.Sequential(*layers)


@register_method("segnet", family="Classical",
                 citation="Badrinarayanan et al., SegNet: A Deep Convolutional Encoder-Decoder "
                          "Architecture for Image Segmentation, IEEE TPAMI 2017",
                 summary="VGG16-BN encoder, max-unpooling decoder, on template and sample "
                         "stacked on channels",
                 options=SegNetOptions, paper_name="SegNet")
class SegNetPair(nn.Module):
    """SegNet taking template ⊕ sample (6 channels for RGB; chapter 9)."""

    def __init__(self, options: SegNetOptions):
        super().__init__()
        self.in_channels = options.in_channels
        self.normalize = common.ImageNetNormalize(options.in_channels, copies=2)
        self.encoder, state = vgg16_bn_blocks(options.weights)
        self.encoder[0][0] = common.widen_first_conv(self.encoder[0][0], copies=2)
        self.pretrained = state is not None
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        # decoder blocks from 1/32 up, mirroring VGG16; the finest one lacks its last conv,
        # which is the classifier (Caffe's conv1_1_D)
        self.decoder = nn.ModuleList()
        for index, (in_channels, out_channels, convs) in reversed(list(enumerate(VGG16_BLOCKS))):
            if index == 0:
                self.decoder.append(decoder_block(out_channels, out_channels, convs - 1))
            else:
                self.decoder.append(decoder_block(out_channels, in_channels, convs))
        self.classifier = nn.Conv2d(VGG16_BLOCKS[0][1], options.num_classes, 3, padding=1)

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """template, sample [N, C, H, W] in [0, 1] -> logits [N, K, H, W] (chapter 9)."""
        common.check_pair(template, sample, self.in_channels)
        # 1. Stack and normalise: [N, 6, H, W].
        feats = self.normalize(common.concat_pair(template, sample))
        # 2. Encoder: each VGG block, then a max-pooling that remembers where the max was.
        pooled = []  # (indices, size before pooling) per block, 1/2 .. 1/32
        for block in self.encoder:
            feats = block(feats)  # [N, C_b, H/2^b, W/2^b]
            size = feats.shape[-2:]
            feats, indices = self.pool(feats)  # [N, C_b, H/2^(b+1), W/2^(b+1)]
            pooled.append((indices, size))
        # 3. Decoder: unpool to the remembered positions (zeros elsewhere), then convolve.
        for block, (indices, size) in zip(self.decoder, reversed(pooled), strict=True):
            feats = block(self.unpool(feats, indices, output_size=size))  # [N, C, 2h, 2w]
        # 4. Per-pixel logits: [N, K, H, W].
        return self.classifier(feats)
