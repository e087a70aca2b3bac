"""Siamese U-Net: one U-Net encoder on sample and template, the decoder fed the sample's
features gated by their difference from the template's (chapter 9).

Source: Kwon et al., "Siamese U-Net with Healthy Template for Accurate Segmentation of
Intracranial Hemorrhage", MICCAI 2019; the plain U-Net parts of ``unet_parts.py`` (Ronneberger
et al. 2015, hand-written: smp has no plain double-convolution U-Net encoder).  BGNet's paper
(Sec. 2) describes it as subtracting the template from the sample at every feature level and
turning the difference into an attention map with an activation function.

What the BGNet comparison leaves unspecified, and what we GUESSED:

* The attention map and where it goes: at every level i, ``skip_i = sample_i * tanh(|sample_i -
  template_i|)`` (element-wise), so a feature that matches the template is shut (0) and a
  differing one passes; the five gated levels replace U-Net's skips and bottleneck.  The
  gate has no parameters, so the network has exactly U-Net's widths.
* Widths: U-Net with base width 16 (16 .. 256 channels), 7.41 MiB of parameters for K = 1
  against the paper's 7.85 MB (Table 3; its U-Net 7.86 MB).  The paper's Siamese U-Net being
  0.01 MB smaller than its U-Net fits exactly this: the same widths, the first convolution
  taking one image instead of a concatenated pair, no extra skip channels.  Base width 17 would
  give 8.36 MiB; 16 is U-Net's own power-of-two progression and the closer one.
* Input: the raw [0, 1] images (the encoder starts with batch normalisation after its first
  convolution; no pretrained weights exist for this U-Net, hence no ``weights`` option).
* Template and sample go through the encoder as one stacked batch, so in training BatchNorm
  statistics are pooled over both images (the encoder is one module either way).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bgnet_lite.methods import common
from bgnet_lite.methods.registry import register_method
from bgnet_lite.methods.siamese.unet_parts import UNetEncoder, UpStage

DOWNSAMPLINGS = 4  # U-Net's four 2x2 max-poolings: inputs must be multiples of 16


@dataclass
class SiameseUNetOptions:
    num_classes: int = 1  # logit channels K (1 = binary, else classes incl. background)
    in_channels: int = 3  # channels per image (1 or 3)
    base_width: int = 16  # channels of the first level, doubled per level (GUESSED, Table 3 size)


def encode_pair(encoder: nn.Module, template: torch.Tensor,
                sample: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The one shared encoder run on template and sample stacked as one batch; returns
    (template_feats, sample_feats), one tensor per level (chapter 9)."""
    both = encoder(torch.cat([template, sample], dim=0))  # per level [2N, C_i, H_i, W_i]
    count = template.shape[0]
    return [level[:count] for level in both], [level[count:] for level in both]


def dissimilarity_gate(template_feats: torch.Tensor, sample_feats: torch.Tensor) -> torch.Tensor:
    """The sample's features where they differ from the template's, shut where they match:
    ``sample * tanh(|sample - template|)`` (Siamese U-Net's difference attention; chapter 9)."""
    return sample_feats * torch.tanh((sample_feats - template_feats).abs())


@register_method("siamese-unet", family="Background generalization",
                 citation="Kwon et al., Siamese U-Net with Healthy Template for Accurate "
                          "Segmentation of Intracranial Hemorrhage, MICCAI 2019",
                 summary="shared U-Net encoder; decoder skips = sample features gated by "
                         "tanh|sample - template|",
                 options=SiameseUNetOptions, paper_name="Siamese U-Net")
class SiameseUNet(nn.Module):
    """U-Net whose encoder sees template and sample with shared weights and whose decoder
    sees their difference-gated features (chapter 9)."""

    def __init__(self, options: SiameseUNetOptions):
        super().__init__()
        self.in_channels = options.in_channels
        self.encoder = UNetEncoder(options.in_channels, options.base_width)
        widths = self.encoder.widths
        self.up_stages = nn.ModuleList(
            UpStage(widths[level + 1], widths[level], widths[level])
            for level in reversed(range(DOWNSAMPLINGS)))
        self.head = nn.Conv2d(widths[0], options.num_classes, 1)
        self.pretrained = False

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        common.check_pair(template, sample, self.in_channels)
        # 1. pad to a multiple of 16 and encode both images with the same weights
        template, size = common.pad_to_multiple(template, 2**DOWNSAMPLINGS)
        sample, _ = common.pad_to_multiple(sample, 2**DOWNSAMPLINGS)
        template_feats, sample_feats = encode_pair(self.encoder, template, sample)
        # 2. gate every level by the template's dissimilarity  # [N, C_i, H/2^i, W/2^i]
        gated = [dissimilarity_gate(t, s) for t, s in zip(template_feats, sample_feats,
                                                           strict=True)]
        # 3. U-Net decoder from the gated bottleneck through the gated skips
        decoded = gated[-1]  # [N, 16 base, H/16, W/16]
        for stage, skip in zip(self.up_stages, reversed(gated[:-1]), strict=True):
            decoded = stage(decoded, skip)
        # 4. per-class logits at the input resolution  # [N, K, H, W]
        return common.crop(self.head(decoded), size)
