"""U-Net on the template-sample stack: Ronneberger, Fischer, Brox, "U-Net: Convolutional
Networks for Biomedical Image Segmentation", MICCAI 2015 (chapter 9).

Template and sample are stacked on channels (6 for RGB) and go through one U-Net, as in the
BGNet paper's "classical" group.  The default is the 2015 architecture, hand-written because
no library ships it: per level two 3x3 convolutions and ReLU, 2x2 max-pooling down, a 2x2
up-convolution halving the channels, the skip map concatenated, four poolings, a 1x1
classifier.  ``encoder=<smp encoder name>`` builds segmentation_models_pytorch's ``Unet``
with that (ImageNet-pretrainable) encoder instead.

GUESSED (the BGNet paper gives only "U-Net" and Params 7.86 MB):
* widths: the original doubles 64 -> 1024 (118 MB of parameters); ``base_width=16``
  (16 -> 256) gives 7.42 MB, the nearest to Table 3's 7.86 MB, so it is the default;
* padded ("same") convolutions instead of the paper's unpadded ones, so the logits cover the
  whole input without the overlap-tile strategy; the input is padded to a multiple of 16;
* BatchNorm after every convolution (common in today's U-Nets, not in the 2015 paper) and no
  drop-out at the end of the contracting path;
* the template enters only through the stacked input channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bgnet_lite.methods import common
from bgnet_lite.methods.concat.smp_encoder import smp_encoder_state
from bgnet_lite.methods.registry import register_method

ORIGINAL = "original"


@dataclass
class UNetOptions:
    num_classes: int = 1  # logit channels K (1 = binary, else classes incl. background)
    in_channels: int = 3  # channels per image (1 or 3)
    weights: str = "auto"  # ImageNet weights of an smp encoder; the original U-Net has none
    encoder: str = ORIGINAL  # "original" (Ronneberger 2015) or an smp encoder, e.g. "resnet34"
    base_width: int = 16  # first level's channels of the original (64 in 2015; 16 ~ Table 3)
    depth: int = 4  # max-poolings of the original (4 in 2015)
    batch_norm: bool = True  # BatchNorm after each conv of the original (not in 2015)


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each with (BatchNorm and) ReLU: one U-Net level (chapter 9)."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool):
        layers: list[nn.Module] = []
        for channels in (in_channels, out_channels):
            layers.append(nn.Conv2d(channels, out_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class OriginalUNet(nn.Module):
    """Ronneberger et al.'s contracting and expanding paths with ``depth`` poolings
    (chapter 9): [N, in_channels, H, W] with H, W multiples of 2**depth -> [N, K, H, W]."""

    def __init__(self, in_channels: int, num_classes: int, base_width: int, depth: int,
                 batch_norm: bool):
        super().__init__()
        widths = [base_width * 2 ** level for level in range(depth + 1)]
        self.down = nn.ModuleList([DoubleConv(in_channels, widths[0], batch_norm)])
        self.down.extend(DoubleConv(widths[level - 1], widths[level], batch_norm)
                         for level in range(1, depth + 1))
        self.pool = nn.MaxPool2d(2)
        self.up_convs = nn.ModuleList(
            nn.ConvTranspose2d(widths[level], widths[level - 1], 2, stride=2)
            for level in range(depth, 0, -1))
        self.up = nn.ModuleList(DoubleConv(2 * widths[level - 1], widths[level - 1], batch_norm)
                                for level in range(depth, 0, -1))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips = []
        feats = self.down[0](images)  # [N, w, H, W]
        for level in self.down[1:]:
            skips.append(feats)
            feats = level(self.pool(feats))  # [N, 2 w_prev, H/2^l, W/2^l]
        for up_conv, level, skip in zip(self.up_convs, self.up, reversed(skips), strict=True):
            feats = level(torch.cat([skip, up_conv(feats)], dim=1))  # [N, w_skip, ...]
        return self.classifier(feats)  # [N, K, H, W]


@register_method("unet", family="Classical",
                 citation="Ronneberger et al., U-Net: Convolutional Networks for Biomedical "
                          "Image Segmentation, MICCAI 2015",
                 summary="U-Net on template and sample stacked on channels",
                 options=UNetOptions, paper_name="U-Net")
class UNetPair(nn.Module):
    """U-Net taking template ⊕ sample (6 channels for RGB; chapter 9)."""

    def __init__(self, options: UNetOptions):
        super().__init__()
        common.check_weights_choice(options.weights)
        self.in_channels = options.in_channels
        self.normalize = common.ImageNetNormalize(options.in_channels, copies=2)
        stacked_channels = 6  # two RGB(-repeated) images
        if options.encoder == ORIGINAL:
            if options.weights == "imagenet":
                raise ValueError("the original U-Net has no ImageNet weights; pass "
                                 "weights='none' or an smp encoder, e.g. encoder='resnet34'")
            self.net = OriginalUNet(stacked_channels, options.num_classes, options.base_width,
                                    options.depth, options.batch_norm)
            self.multiple = 2 ** options.depth
            self.pretrained = False
        else:
            import segmentation_models_pytorch as smp

            self.net = smp.Unet(options.encoder, encoder_weights=None,
                                in_channels=stacked_channels, classes=options.num_classes)
            state = smp_encoder_state(options.encoder, options.weights, stacked_channels)
            if state is not None:
                self.net.encoder.load_state_dict(state)
            self.multiple = 32
            self.pretrained = state is not None

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """template, sample [N, C, H, W] in [0, 1] -> logits [N, K, H, W] (chapter 9)."""
        common.check_pair(template, sample, self.in_channels)
        # 1. Stack and normalise: [N, 6, H, W], padded to the pooling multiple.
        stacked = self.normalize(common.concat_pair(template, sample))
        stacked, size = common.pad_to_multiple(stacked, self.multiple)
        # 2. One U-Net over the stack, cropped back: [N, K, H, W].
        return common.crop(self.net(stacked), size)
