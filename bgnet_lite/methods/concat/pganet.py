"""PGA-Net on the template-sample stack: Dong, Song, He, Xu, Yan, Meng, "PGA-Net: Pyramid
Feature Fusion and Global Context Attention Network for Automated Surface Defect Detection",
IEEE TII 2020 (chapter 9).

A compact implementation from the paper's description, on torchvision's ResNet:
1. the backbone gives five maps (1/2 .. 1/32);
2. pyramid feature fusion: every map is projected to one width and brought to each of the
   five resolutions (max-pooled down, bilinearly up) by dense skip connections, and each
   resolution fuses all five by a 3x3 convolution;
3. global context attention, from the coarsest fused map to the finest: the coarser map's
   global average pool gates the finer map's channels, and the upsampled coarser map is
   added (information flows from low to high resolution);
4. per resolution a 1x1 classifier and a boundary refinement block (Peng et al., "Large
   Kernel Matters", CVPR 2017: logits + conv3x3(ReLU(conv3x3(logits)))) give a side output;
5. the five side outputs, upsampled to the input, are fused by a 1x1 convolution into the
   prediction; deep supervision puts the loss on every side output too (``training_losses``).
Template and sample are stacked on channels (6 for RGB) through a widened first convolution.

GUESSED (neither the BGNet paper, which gives only "PGANet" and Params 51.41 MB, nor our
reading of the PGA-Net paper's text fixes them): ResNet-18 as the ResNet (its 1/2 .. 1/32
maps are the paper's five levels; deeper ResNets are an option), a 96-channel fusion width
(brings Params to 52.4 MB, near Table 3's 51.41 MB), 1x1 projections shared by the five
fusions, max-pooling for the downward and bilinear interpolation for the upward skips, a
sigmoid gate from one 1x1 convolution in the attention, the refinement on the K-channel logits,
the side-output fusion starting as their mean (as HED's does; from a random start it learns
too slowly for the two-pair overfit check), and side losses weighted 1 each (the engine's
focal loss, like the main output's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from bgnet_lite.losses import focal_loss
from bgnet_lite.methods import common
from bgnet_lite.methods.common import conv_bn_relu
from bgnet_lite.methods.registry import register_method

RESNET_CHANNELS = {
    "resnet18": (64, 64, 128, 256, 512), "resnet34": (64, 64, 128, 256, 512),
    "resnet50": (64, 256, 512, 1024, 2048), "resnet101": (64, 256, 512, 1024, 2048),
}
STRIDES = (2, 4, 8, 16, 32)  # image pixels per cell of the five levels


@dataclass
class PGANetOptions:
    num_classes: int = 1  # logit channels K (1 = binary, else classes incl. background)
    in_channels: int = 3  # channels per image (1 or 3)
    weights: str = "auto"  # ImageNet ResNet weights: "auto" | "imagenet" | "none"
    backbone: str = "resnet18"  # torchvision ResNet (guessed; 18 brings Params near Table 3)
    fusion_channels: int = 96  # width of the fused pyramid (guessed; ~Table 3's 51.41 MB)
    side_weight: float = 1.0  # loss weight of each deeply supervised side output (guessed)


def resize(feats: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A map brought to ``size``: max-pooled when larger, bilinear when smaller (chapter 9)."""
    if tuple(feats.shape[-2:]) == tuple(size):
        return feats
    if feats.shape[-2] > size[0]:
        return F.adaptive_max_pool2d(feats, size)
    return F.interpolate(feats, size=size, mode="bilinear", align_corners=False)


class ResNetPyramid(nn.Module):
    """torchvision ResNet's five maps, 1/2 .. 1/32, from the 6-channel stack (chapter 9)."""

    def __init__(self, arch: str, weights: str):
        super().__init__()
        if arch not in RESNET_CHANNELS:
            raise ValueError(f"backbone must be one of {sorted(RESNET_CHANNELS)}, got {arch!r}")
        resnet = getattr(torchvision.models, arch)(weights=None)
        state = common.torchvision_state(arch, weights)
        if state is not None:
            resnet.load_state_dict(state)
        self.pretrained = state is not None
        self.stem = nn.Sequential(common.widen_first_conv(resnet.conv1, copies=2), resnet.bn1,
                                  resnet.relu)
        self.maxpool = resnet.maxpool
        self.layers = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])

    def forward(self, stacked: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(stacked)]  # [N, 64, H/2, W/2]
        feats.append(self.layers[0](self.maxpool(feats[0])))  # [N, C_1, H/4, W/4]
        for layer in self.layers[1:]:
            feats.append(layer(feats[-1]))  # [N, C_i, H/2^(i+1), W/2^(i+1)]
        return feats


class PyramidFeatureFusion(nn.Module):
    """Every level fused into each of the five resolutions by dense skips (chapter 9)."""

    def __init__(self, in_channels: tuple[int, ...], width: int):
        super().__init__()
        self.project = nn.ModuleList(conv_bn_relu(channels, width, 1) for channels in in_channels)
        self.fuse = nn.ModuleList(conv_bn_relu(len(in_channels) * width, width, 3)
                                  for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        projected = [project(level) for project, level in zip(self.project, feats, strict=True)]
        fused = []
        for target, fuse in zip(feats, self.fuse, strict=True):
            size = tuple(target.shape[-2:])
            stacked = torch.cat([resize(level, size) for level in projected], dim=1)  # [N, 5w, ..]
            fused.append(fuse(stacked))  # [N, w, h_i, w_i]
        return fused


class GlobalContextAttention(nn.Module):
    """The coarser map's global context gates the finer map's channels; the upsampled coarser
    map is added, then a 3x3 convolution (chapter 9)."""

    def __init__(self, width: int):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, width, 1),
                                  nn.Sigmoid())
        self.refine = conv_bn_relu(width, width, 3)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        weights = self.gate(coarse)  # [N, w, 1, 1]
        upsampled = resize(coarse, tuple(fine.shape[-2:]))  # [N, w, h, w]
        return self.refine(fine * weights + upsampled)


class BoundaryRefinement(nn.Module):
    """Peng et al.'s residual boundary refinement on logits: x + conv(ReLU(conv(x)))
    (chapter 9)."""

    def __init__(self, channels: int):
        super().__init__()
        self.residual = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1),
                                      nn.ReLU(inplace=True),
                                      nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + self.residual(logits)


@register_method("pganet", family="Classical",
                 citation="Dong et al., PGA-Net: Pyramid Feature Fusion and Global Context "
                          "Attention Network for Automated Surface Defect Detection, "
                          "IEEE TII 2020",
                 summary="ResNet, pyramid feature fusion, global context attention, boundary "
                         "refinement, deep supervision, on template and sample stacked",
                 options=PGANetOptions, paper_name="PGANet")
class PGANetPair(nn.Module):
    """PGA-Net taking template ⊕ sample (6 channels for RGB; chapter 9)."""

    def __init__(self, options: PGANetOptions):
        super().__init__()
        self.in_channels = options.in_channels
        self.side_weight = options.side_weight
        width, num_classes = options.fusion_channels, options.num_classes
        self.normalize = common.ImageNetNormalize(options.in_channels, copies=2)
        self.backbone = ResNetPyramid(options.backbone, options.weights)
        self.pretrained = self.backbone.pretrained
        levels = RESNET_CHANNELS[options.backbone]
        self.fusion = PyramidFeatureFusion(levels, width)
        self.attention = nn.ModuleList(GlobalContextAttention(width) for _ in levels[1:])
        self.side_classifiers = nn.ModuleList(nn.Conv2d(width, num_classes, 1) for _ in levels)
        self.refinements = nn.ModuleList(BoundaryRefinement(num_classes) for _ in levels)
        self.fuse_sides = nn.Conv2d(len(levels) * num_classes, num_classes, 1)
        with torch.no_grad():  # start as the mean of the side outputs, as HED's fusion does
            self.fuse_sides.weight.copy_(
                torch.eye(num_classes).repeat(1, len(levels)).view_as(self.fuse_sides.weight)
                / len(levels))
            self.fuse_sides.bias.zero_()

    def forward_details(self, template: torch.Tensor, sample: torch.Tensor) -> dict:
        """"logits" [N, K, H, W] and "side_logits", the five side outputs 1/2 .. 1/32
        upsampled to [N, K, H, W] (chapter 9)."""
        common.check_pair(template, sample, self.in_channels)
        size = tuple(template.shape[-2:])
        # 1. Stack, normalise, backbone: five maps [N, C_i, H/2^(i+1), W/2^(i+1)].
        feats = self.backbone(self.normalize(common.concat_pair(template, sample)))
        # 2. Pyramid feature fusion: five maps [N, w, H/2^(i+1), W/2^(i+1)].
        fused = self.fusion(feats)
        # 3. Global context attention from 1/32 down to 1/2.
        attended = [fused[-1]]
        for fine, attention in zip(reversed(fused[:-1]), reversed(self.attention), strict=True):
            attended.insert(0, attention(fine, attended[0]))  # [N, w, h_i, w_i]
        # 4. Side outputs: classifier + boundary refinement, upsampled: 5 x [N, K, H, W].
        side_logits = [
            resize(refine(classify(level)), size)
            for classify, refine, level in zip(self.side_classifiers, self.refinements,
                                               attended, strict=True)]
        # 5. Fusion of the five side outputs: [N, K, H, W].
        logits = self.fuse_sides(torch.cat(side_logits, dim=1))
        return {"logits": logits, "side_logits": side_logits}

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """template, sample [N, C, H, W] in [0, 1] -> logits [N, K, H, W] (chapter 9)."""
        return self.forward_details(template, sample)["logits"]

    def training_losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the deep supervision: each side output's weighted focal loss
        (chapter 9)."""
        details = self.forward_details(batch["template"], batch["sample"])
        extra = {f"side_1/{stride}": self.side_weight * focal_loss(side, batch["mask"])
                 for stride, side in zip(STRIDES, details["side_logits"], strict=True)}
        return details["logits"], extra
