"""DSSSNet: weight-shared U-Net encoders, difference and correlation modules on every skip, one
decoder with an output per stage (deep supervision) and its own combined loss (chapter 9).

Source: Ling, Zhang, Ma, Shi, Wen, "Deep Siamese Semantic Segmentation Network for PCB Welding
Defect Detection", IEEE Trans. Instrumentation and Measurement 71 (2022).  Its abstract: two
encoders sharing weights, a decoder fusing the encoders' deep features with their difference
computed by correlation modules through skip connections, several output layers, and a loss
combining weighted cross-entropy, Lovász-softmax and a weighted precision-recall term.  BGNet's
paper (Sec. 2 and 4.4) adds that its spatial tolerance comes from pooling "similar to max
pooling" with a predefined range and from global pooling.  No code is public; we could not
read the article itself, so everything below the abstract is GUESSED:

* Encoder: the plain U-Net encoder of ``unet_parts.py`` (five levels), base width 32 (32 ..
  512 channels), chosen for the size: 35.13 MiB for K = 1 against the paper's 33.60 MB
  (Table 3); 28 would give 26.90 MiB, and 32 keeps U-Net's power-of-two widths.  Raw [0, 1]
  input, no pretrained weights, hence no ``weights`` option.
* Difference module (the "max pooling" tolerance): the distance of the sample's feature from
  the range the template's feature takes in a ``pool_size`` x ``pool_size`` neighbourhood,
  ``relu(s - maxpool(t)) + relu(-maxpool(-t) - s)``: zero wherever a shift of up to
  ``pool_size // 2`` cells explains the sample.
* Correlation module (the "global pooling"): template, sample and difference concatenated,
  re-weighted per channel by squeeze-and-excitation (global average pooling, reduction 16)
  and projected back to the level's width by a 1x1 convolution + BN + ReLU; its output is the
  decoder's skip (the bottleneck's too).
* Outputs: a 1x1 head after each of the four decoder stages (strides 8, 4, 2, 1), up-sampled
  bilinearly; the full-resolution one is the prediction.
* Loss (``training_losses``): the engine adds the focal loss on the prediction itself; the
  EXTRA terms returned are DSSSNet's own loss on every output (prediction and the three side
  outputs, each weight 1): weighted cross-entropy (defect classes weighted
  ``defect_weight``, background 1) + Lovász (binary hinge for K = 1, Lovász-softmax for K > 1)
  + weighted precision-recall ``precision_weight (1 - P) + (1 - precision_weight) (1 - R)``
  with soft precision P and recall R of the defect pixels (recall weighted more, the paper's
  "recall improvement").
* Template and sample go through the encoder as one stacked batch: in training BatchNorm
  statistics are pooled over both images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bgnet_lite.methods import common
from bgnet_lite.methods.registry import register_method
from bgnet_lite.methods.siamese.lovasz import lovasz_hinge, lovasz_softmax
from bgnet_lite.methods.siamese.siamese_unet import encode_pair
from bgnet_lite.methods.siamese.unet_parts import UNetEncoder, UpStage

DOWNSAMPLINGS = 4  # the U-Net encoder's four poolings: inputs padded to multiples of 16


@dataclass
class DSSSNetOptions:
    num_classes: int = 1  # logit channels K (1 = binary, else classes incl. background)
    in_channels: int = 3  # channels per image (1 or 3)
    base_width: int = 32  # first level's channels, doubled per level (GUESSED, Table 3 size)
    pool_size: int = 3  # neighbourhood of the shift-tolerant difference (GUESSED)
    defect_weight: float = 5.0  # cross-entropy weight of defect classes, background 1 (GUESSED)
    precision_weight: float = 0.3  # weight of 1 - precision; 1 - recall gets the rest (GUESSED)


def shift_tolerant_difference(template_feats: torch.Tensor, sample_feats: torch.Tensor,
                              pool_size: int) -> torch.Tensor:
    """How far each sample feature lies outside the range the template's feature takes in a
    ``pool_size`` neighbourhood: 0 where a small shift explains it (chapter 9).
    [N, C, h, w] -> [N, C, h, w]"""
    pad = pool_size // 2
    local_max = F.max_pool2d(template_feats, pool_size, stride=1, padding=pad)
    local_min = -F.max_pool2d(-template_feats, pool_size, stride=1, padding=pad)
    return torch.relu(sample_feats - local_max) + torch.relu(local_min - sample_feats)


class CorrelationModule(nn.Module):
    """Template, sample and their difference, re-weighted per channel from global pooling
    (squeeze-and-excitation) and projected to ``channels`` (chapter 9)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        stacked = 3 * channels
        self.excite = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(stacked, stacked // reduction, 1),
            nn.ReLU(inplace=True), nn.Conv2d(stacked // reduction, stacked, 1), nn.Sigmoid())
        self.project = nn.Sequential(nn.Conv2d(stacked, channels, 1, bias=False),
                                     nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

    def forward(self, template_feats: torch.Tensor, sample_feats: torch.Tensor,
                difference: torch.Tensor) -> torch.Tensor:
        stacked = torch.cat([template_feats, sample_feats, difference], dim=1)  # [N, 3C, h, w]
        return self.project(stacked * self.excite(stacked))  # [N, C, h, w]


def weighted_cross_entropy(logits: torch.Tensor, mask: torch.Tensor,
                           defect_weight: float) -> torch.Tensor:
    """Cross-entropy with defect pixels weighted ``defect_weight`` (chapter 9)."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(
            logits[:, 0], mask.float(), pos_weight=logits.new_tensor(defect_weight))
    weights = logits.new_full((logits.shape[1],), defect_weight)
    weights[0] = 1.0
    return F.cross_entropy(logits, mask.long(), weight=weights)


def precision_recall_loss(logits: torch.Tensor, mask: torch.Tensor,
                          precision_weight: float, eps: float = 1.0) -> torch.Tensor:
    """``w (1 - P) + (1 - w) (1 - R)`` with soft precision and recall of all defect pixels
    (defect probability: sigmoid for K = 1, 1 - p(background) for K > 1; chapter 9)."""
    if logits.shape[1] == 1:
        defect_prob = torch.sigmoid(logits[:, 0])
    else:
        defect_prob = 1 - torch.softmax(logits, dim=1)[:, 0]
    defect = (mask > 0).float()  # [N, H, W]
    true_positive = (defect_prob * defect).sum()
    precision = (true_positive + eps) / (defect_prob.sum() + eps)
    recall = (true_positive + eps) / (defect.sum() + eps)
    return precision_weight * (1 - precision) + (1 - precision_weight) * (1 - recall)


def lovasz_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary Lovász hinge for K = 1, Lovász-softmax for K > 1 (chapter 9)."""
    if logits.shape[1] == 1:
        return lovasz_hinge(logits[:, 0], mask)
    return lovasz_softmax(torch.softmax(logits, dim=1), mask.long())


@register_method("dsssnet", family="Background generalization",
                 citation="Ling et al., Deep Siamese Semantic Segmentation Network for PCB "
                          "Welding Defect Detection, IEEE TIM 2022",
                 summary="shared U-Net encoder; shift-tolerant difference + SE correlation "
                         "skips; deep supervision; weighted CE + Lovász + precision-recall",
                 options=DSSSNetOptions, paper_name="DSSSNet")
class DSSSNet(nn.Module):
    """DSSSNet (chapter 9): ``forward(template, sample) -> logits [N, K, H, W]``;
    ``training_losses`` adds its own loss on all four outputs."""

    def __init__(self, options: DSSSNetOptions):
        super().__init__()
        self.options = options
        self.in_channels = options.in_channels
        self.encoder = UNetEncoder(options.in_channels, options.base_width)
        widths = self.encoder.widths
        self.correlations = nn.ModuleList(CorrelationModule(width) for width in widths)
        self.up_stages = nn.ModuleList(
            UpStage(widths[level + 1], widths[level], widths[level])
            for level in reversed(range(DOWNSAMPLINGS)))
        self.heads = nn.ModuleList(
            nn.Conv2d(widths[level], options.num_classes, 1)
            for level in reversed(range(DOWNSAMPLINGS)))
        self.pretrained = False

    def forward_outputs(self, template: torch.Tensor, sample: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every output, coarsest first, all [N, K, H, W]; the last is the
        prediction (chapter 9)."""
        common.check_pair(template, sample, self.in_channels)
        # 1. pad to a multiple of 16 and encode both images with the same weights
        template, size = common.pad_to_multiple(template, 2**DOWNSAMPLINGS)
        sample, _ = common.pad_to_multiple(sample, 2**DOWNSAMPLINGS)
        template_feats, sample_feats = encode_pair(self.encoder, template, sample)
        # 2. difference + correlation at every level  # [N, C_i, H/2^i, W/2^i]
        skips = [
            correlation(t, s, shift_tolerant_difference(t, s, self.options.pool_size))
            for correlation, t, s in zip(self.correlations, template_feats, sample_feats,
                                         strict=True)]
        # 3. decoder with a head per stage, each up-sampled to the input  # [N, K, H, W]
        decoded, outputs = skips[-1], []
        for stage, head, skip in zip(self.up_stages, self.heads, reversed(skips[:-1]),
                                     strict=True):
            decoded = stage(decoded, skip)
            logits = F.interpolate(head(decoded), size=template.shape[-2:], mode="bilinear",
                                   align_corners=False)
            outputs.append(common.crop(logits, size))
        return outputs

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        return self.forward_outputs(template, sample)[-1]

    def training_losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The prediction and DSSSNet's own loss terms summed over its four outputs (the
        engine adds the focal loss on the prediction; chapter 9)."""
        outputs = self.forward_outputs(batch["template"], batch["sample"])
        mask = batch["mask"]
        options = self.options
        extra = {
            "weighted_ce": sum(weighted_cross_entropy(o, mask, options.defect_weight)
                               for o in outputs),
            "lovasz": sum(lovasz_loss(o, mask) for o in outputs),
            "precision_recall": sum(precision_recall_loss(o, mask, options.precision_weight)
                                    for o in outputs),
        }
        return outputs[-1], extra
