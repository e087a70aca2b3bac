"""PFENet: prior mask + feature enrichment module, as a pair segmenter (chapter 9).

Source: Tian, Zhao, Shu, Yang, Li, Jia, "Prior Guided Feature Enrichment Network for Few-Shot
Segmentation", IEEE TPAMI 2020 (arXiv 2008.01449), 1-shot.  Backbone: torchvision's ResNet-50
with layer3 and layer4 dilated (output stride 8); the rest is hand-written (no library has it).

What the paper's method does, kept: the middle-level features (layer2 + layer3, 1536 channels)
are reduced to 256 for query and support; the support's are masked-average-pooled into a
prototype; the high-level features (layer4, the support's computed on its masked layer3) give
the training-free prior mask (highest cosine similarity to any support foreground position,
min-max normalised); the feature enrichment module merges [query, prototype, prior] at four
scales, passes each scale's features on to the next (the inter-scale path, alpha convs) and
classifies every scale (auxiliary losses), then a residual head classifies the concatenation.
Losses: the engine's focal loss on the final output plus PFENet's auxiliary cross-entropy of
each scale (weight 1.0, the paper's), averaged over the scales and the episodes.  The ImageNet
backbone is frozen (BatchNorm statistics included), as in PFENet.

How it meets the pair contract: the support bank and episodes of ``support.py`` (its docstring):
the query is the sample, the support of each defect class is a stored training defect, the
template only stands in as the support (with an all-background mask: empty prototype, zero
prior) until one is captured.  We do NOT give PFENet the template as a "normal" prior: PFENet
has no defect-free input, and the paper compares it as a foreground-generalization method.

GUESSED (the paper's comparison leaves them open): the ResNet-50 stem is torchvision's single
7x7 convolution (PFENet's PSPNet ResNet has a deep 3-conv stem); the four scales are fractions
(1, 1/2, 1/4, 8/60) of the feature map, i.e. PFENet's bins (60, 30, 15, 8) for its 60 x 60
maps, so any input size works; without pretrained weights (weights="none" or a failed "auto")
the backbone is trained, since a frozen random backbone would be meaningless; widths are
PFENet's (256), so Params MB (130.9, ResNet-50 included) is far above the paper's Table 3 30.25
(which cannot hold a ResNet-50: 90 MB alone) (chapter 9).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bgnet_lite.methods.few_shot.support import (
    FewShotPairSegmenter,
    dilated_resnet50,
    episode_cross_entropy,
    masked_average_pooling,
    prior_mask,
    resize_mask,
)
from bgnet_lite.methods.registry import register_method

MIDDLE_CHANNELS = 512 + 1024  # ResNet-50 layer2 + layer3
INTERPOLATION = {"mode": "bilinear", "align_corners": True}


@dataclass
class PFENetOptions:
    num_classes: int = 1  # contract: logit channels K (1 = binary)
    in_channels: int = 3  # contract: channels per image (1 or 3)
    weights: str = "auto"  # ImageNet ResNet-50: "auto" | "imagenet" | "none"
    reduce_dim: int = 256  # PFENet: width of the reduced features and of the whole head
    scales: tuple[float, ...] = (1.0, 0.5, 0.25, 8 / 60)  # PFENet's bins 60/30/15/8 of 60 x 60
    aux_weight: float = 1.0  # PFENet: weight of the per-scale auxiliary cross-entropy
    freeze_backbone: bool = True  # PFENet keeps its pretrained backbone fixed (not if random)
    support_update: str = "reservoir"  # support bank: "reservoir" (uniform draw) or "first"


def conv_relu(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    """PFENet's bias-free convolution + ReLU (chapter 9)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size,
                                   padding=kernel_size // 2, bias=False), nn.ReLU(inplace=True))


def classifier(width: int) -> nn.Sequential:
    """3x3 conv, dropout 0.1, 1x1 to background/foreground (PFENet's cls heads; chapter 9)."""
    return nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                         nn.Dropout2d(p=0.1), nn.Conv2d(width, 2, 1))


class FeatureEnrichment(nn.Module):
    """PFENet's feature enrichment module (chapter 9): [query, prototype, prior] merged at
    several scales, the inter-scale path passing each scale's result to the next, one auxiliary
    classifier per scale, then the concatenation fused back to ``width`` channels."""

    def __init__(self, width: int, scales: tuple[float, ...]):
        super().__init__()
        self.scales = scales
        self.merge = nn.ModuleList(conv_relu(2 * width + 1, width) for _ in scales)
        self.inter_scale = nn.ModuleList(conv_relu(2 * width, width) for _ in scales[1:])
        self.refine = nn.ModuleList(
            nn.Sequential(conv_relu(width, width, 3), conv_relu(width, width, 3)) for _ in scales)
        self.aux_classifiers = nn.ModuleList(classifier(width) for _ in scales)
        self.fuse = conv_relu(width * len(scales), width)

    def forward(self, query: torch.Tensor, prototype: torch.Tensor,
                prior: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """query [N, C, h, w], prototype [N, C, 1, 1], prior [N, 1, h, w] -> enriched query
        [N, C, h, w] and each scale's [N, 2, h_s, w_s] auxiliary logits."""
        size = query.shape[-2:]
        previous, enriched, aux_logits = None, [], []
        for index, scale in enumerate(self.scales):
            bins = (max(1, int(size[0] * scale)), max(1, int(size[1] * scale)))
            query_bin = nn.functional.adaptive_avg_pool2d(query, bins)  # [N, C, h_s, w_s]
            merged = self.merge[index](torch.cat([
                query_bin, prototype.expand(-1, -1, *bins),
                nn.functional.interpolate(prior, size=bins, **INTERPOLATION)], dim=1))
            if previous is not None:  # the inter-scale path from the previous scale
                previous = nn.functional.interpolate(previous, size=bins, **INTERPOLATION)
                merged = merged + self.inter_scale[index - 1](torch.cat([merged, previous], 1))
            merged = merged + self.refine[index](merged)
            aux_logits.append(self.aux_classifiers[index](merged))
            previous = merged
            enriched.append(nn.functional.interpolate(merged, size=size, **INTERPOLATION))
        return self.fuse(torch.cat(enriched, dim=1)), aux_logits


@register_method("pfenet", family="Foreground generalization",
                 citation="Tian et al., Prior Guided Feature Enrichment Network for Few-Shot "
                          "Segmentation, TPAMI 2020",
                 summary="few-shot: cosine prior + multi-scale feature enrichment against a "
                         "stored labelled defect per class (support bank)",
                 options=PFENetOptions, paper_name="PFENet")
class PFENetPair(FewShotPairSegmenter):
    """PFENet (1-shot) behind ``forward(template, sample)`` through the support bank
    (chapter 9)."""

    def __init__(self, options: PFENetOptions):
        super().__init__(options.num_classes, options.in_channels, options.support_update)
        self.options = options
        width = options.reduce_dim
        self.stages, self.pretrained = dilated_resnet50(options.weights)
        self.frozen = options.freeze_backbone and self.pretrained
        self.stages.requires_grad_(not self.frozen)
        self.reduce_query = nn.Sequential(conv_relu(MIDDLE_CHANNELS, width), nn.Dropout2d(0.5))
        self.reduce_support = nn.Sequential(conv_relu(MIDDLE_CHANNELS, width), nn.Dropout2d(0.5))
        self.enrichment = FeatureEnrichment(width, tuple(options.scales))
        self.residual = nn.Sequential(conv_relu(width, width, 3), conv_relu(width, width, 3))
        self.classifier = classifier(width)

    def train(self, mode: bool = True) -> PFENetPair:
        """nn.Module.train, the frozen backbone kept in eval mode (chapter 9)."""
        super().train(mode)
        if self.frozen:  # a frozen backbone keeps its ImageNet BatchNorm statistics
            self.stages.eval()
        return self

    def backbone(self, images: torch.Tensor, mask: torch.Tensor | None = None):
        """layer2 + layer3 and layer4 features; layer4 sees layer3 x mask when one is given
        (PFENet's support path; chapter 9)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            feats = self.stages[2](self.stages[1](self.stages[0](images)))  # [N, 512, H/8, W/8]
            middle = self.stages[3](feats)  # [N, 1024, H/8, W/8]
            high = middle if mask is None else middle * resize_mask(mask, middle.shape[-2:])
            high = self.stages[4](high)  # [N, 2048, H/8, W/8]
        return torch.cat([middle, feats], dim=1), high

    def encode_query(self, images: torch.Tensor) -> dict:
        """Reduced middle-level and high-level query features (chapter 9)."""
        middle, high = self.backbone(images)
        return {"middle": self.reduce_query(middle), "high": high}  # [N, 256 | 2048, H/8, W/8]

    def encode_support(self, images: torch.Tensor, masks: torch.Tensor) -> dict:
        """The support's prototype, high-level features and mask (chapter 9)."""
        middle, high = self.backbone(images, masks)
        prototype = masked_average_pooling(self.reduce_support(middle), masks)  # [B, 256, 1, 1]
        return {"prototype": prototype, "high": high, "mask": masks}

    def episode(self, query: dict, support: dict, normal: None) -> dict:
        """One 1-shot PFENet episode: [N, 2, H/8, W/8] logits and the auxiliary logits
        (chapter 9)."""
        # 1. training-free prior from the high-level features
        prior = prior_mask(query["high"], support["high"], support["mask"])  # [N, 1, H/8, W/8]
        # 2. feature enrichment with the prototype and the prior at every scale
        enriched, aux_logits = self.enrichment(query["middle"], support["prototype"], prior)
        # 3. residual head and classifier
        enriched = enriched + self.residual(enriched)  # [N, 256, H/8, W/8]
        return {"logits": self.classifier(enriched), "aux_logits": aux_logits}

    def episode_losses(self, outputs: list[dict], targets: torch.Tensor) -> dict:
        """PFENet's auxiliary losses: each scale's cross-entropy, mean over scales and
        episodes, times ``aux_weight`` (chapter 9)."""
        if not self.options.aux_weight:
            return {}
        terms = [episode_cross_entropy(aux, targets[:, slot])
                 for slot, output in enumerate(outputs) for aux in output["aux_logits"]]
        return {"pfenet_aux": self.options.aux_weight * torch.stack(terms).mean()}
