"""DeepLabV3+ on the template-sample stack: Chen, Zhu, Papandreou, Schroff, Adam,
"Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation", ECCV 2018;
segmentation_models_pytorch's ``DeepLabV3Plus`` (chapter 9).

Template and sample are stacked on channels (6 for RGB) into one network: an encoder with
output stride 16, atrous spatial pyramid pooling (depthwise-separable, rates 6/12/18 at stride
16 as in the paper), and the decoder that upsamples x4, concatenates the 1/4 encoder features
(reduced to 48 channels) and refines them with 3x3 convolutions before a last x4 upsampling.

GUESSED (the BGNet paper gives only "DeepLabV3+" and Params 32.98 MB): the encoder.  The
paper uses ResNet-101 or Xception (far above Table 3's figure); ResNet-18 (47.1 MB) is the
nearest ResNet to 32.98 MB (ResNet-34: 85.6 MB) and is BGNet's own backbone, so it is the
default.  The input is padded to a multiple of 32 and the logits cropped back.  The ASPP's
image-pooling branch has BatchNorm on a 1x1 map, so training needs batches of 2 or more.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bgnet_lite.methods import common
from bgnet_lite.methods.concat.smp_encoder import smp_encoder_state
from bgnet_lite.methods.registry import register_method


@dataclass
class DeepLabV3PlusOptions:
    num_classes: int = 1  # logit channels K (1 = binary, else classes incl. background)
    in_channels: int = 3  # channels per image (1 or 3)
    weights: str = "auto"  # ImageNet encoder weights: "auto" | "imagenet" | "none"
    encoder: str = "resnet18"  # smp encoder (the paper: ResNet-101/Xception; 18 ~ Table 3)
    output_stride: int = 16  # encoder output stride (the paper trains at 16)
    atrous_rates: tuple[int, ...] = (6, 12, 18)  # ASPP rates (the paper's, at stride 16)
    decoder_channels: int = 256  # ASPP and decoder width (the paper's 256)


@register_method("deeplabv3plus", family="Classical",
                 citation="Chen et al., Encoder-Decoder with Atrous Separable Convolution for "
                          "Semantic Image Segmentation (DeepLabV3+), ECCV 2018",
                 summary="smp DeepLabV3+ on template and sample stacked on channels",
                 options=DeepLabV3PlusOptions, paper_name="DeepLabV3+")
class DeepLabV3PlusPair(nn.Module):
    """DeepLabV3+ taking template ⊕ sample (6 channels for RGB; chapter 9)."""

    def __init__(self, options: DeepLabV3PlusOptions):
        super().__init__()
        import segmentation_models_pytorch as smp

        self.in_channels = options.in_channels
        self.normalize = common.ImageNetNormalize(options.in_channels, copies=2)
        stacked_channels = 6  # two RGB(-repeated) images
        self.net = smp.DeepLabV3Plus(
            options.encoder, encoder_weights=None, encoder_output_stride=options.output_stride,
            decoder_channels=options.decoder_channels,
            decoder_atrous_rates=tuple(options.atrous_rates), in_channels=stacked_channels,
            classes=options.num_classes)
        state = smp_encoder_state(options.encoder, options.weights, stacked_channels,
                                  options.output_stride)
        if state is not None:
            self.net.encoder.load_state_dict(state)
        self.pretrained = state is not None

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """template, sample [N, C, H, W] in [0, 1] -> logits [N, K, H, W] (chapter 9)."""
        common.check_pair(template, sample, self.in_channels)
        # 1. Stack and normalise: [N, 6, H, W], padded to a multiple of 32.
        stacked = self.normalize(common.concat_pair(template, sample))
        stacked, size = common.pad_to_multiple(stacked, 32)
        # 2. Encoder (1/16) + ASPP + decoder (1/4) + x4 upsampling, cropped: [N, K, H, W].
        return common.crop(self.net(stacked), size)
