"""FCN on the template-sample stack: Long, Shelhamer, Darrell, "Fully Convolutional Networks
for Semantic Segmentation", CVPR 2015; torchvision's ``fcn_resnet50`` (chapter 9).

Template and sample are stacked on channels (6 for RGB); the ResNet-50's first convolution is
widened to take them (``common.widen_first_conv``: with ImageNet weights, a stack of two
identical images gives the pretrained response).  torchvision's FCN is the maintained one: a
dilated ResNet-50 (output stride 8), an FCN head (3x3 conv, BN, ReLU, dropout, 1x1 conv) and
bilinear upsampling to the input size.

GUESSED (the BGNet paper gives only "FCN" and Params 15.32 MB): the backbone (Long et al.
used VGG16 with skip layers, FCN-8s; torchvision's ResNet-50 FCN has 125.7 MB of parameters,
far from Table 3's figure, which no standard FCN reaches); the auxiliary head on layer3 is off
by default (Long et al. have none) and, when on, its loss is weighted 0.5 as in torchvision's
reference training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from bgnet_lite.losses import focal_loss
from bgnet_lite.methods import common
from bgnet_lite.methods.registry import register_method


@dataclass
class FCNOptions:
    num_classes: int = 1  # logit channels K (1 = binary, else classes incl. background)
    in_channels: int = 3  # channels per image (1 or 3)
    weights: str = "auto"  # ImageNet ResNet-50 backbone: "auto" | "imagenet" | "none"
    aux_loss: bool = False  # torchvision's auxiliary FCN head on layer3 (not in Long et al.)
    aux_weight: float = 0.5  # weight of the auxiliary head's loss (torchvision's reference)


@register_method("fcn", family="Classical",
                 citation="Long et al., Fully Convolutional Networks for Semantic Segmentation, "
                          "CVPR 2015",
                 summary="torchvision FCN-ResNet50 on template and sample stacked on channels",
                 options=FCNOptions, paper_name="FCN")
class FCNPair(nn.Module):
    """FCN-ResNet50 taking template ⊕ sample (6 channels for RGB; chapter 9)."""

    def __init__(self, options: FCNOptions):
        super().__init__()
        self.in_channels = options.in_channels
        self.aux_weight = options.aux_weight
        self.normalize = common.ImageNetNormalize(options.in_channels, copies=2)
        self.net = torchvision.models.segmentation.fcn_resnet50(
            weights=None, weights_backbone=None, num_classes=options.num_classes,
            aux_loss=options.aux_loss)
        state = common.torchvision_state("resnet50", options.weights)
        if state is not None:
            # the classifier's fc is not part of the FCN backbone
            self.net.backbone.load_state_dict(
                {key: value for key, value in state.items() if not key.startswith("fc.")})
        # widened after loading, so the 6-channel kernel is the pretrained one split in two
        self.net.backbone.conv1 = common.widen_first_conv(self.net.backbone.conv1, copies=2)
        self.pretrained = state is not None

    def forward_details(self, template: torch.Tensor, sample: torch.Tensor) -> dict:
        """"logits" [N, K, H, W] and, with ``aux_loss``, "aux_logits" (chapter 9)."""
        common.check_pair(template, sample, self.in_channels)
        # 1. Stack and normalise: [N, 6, H, W].
        stacked = self.normalize(common.concat_pair(template, sample))
        # 2. Dilated ResNet-50 (1/8) + FCN head, upsampled bilinearly: [N, K, H, W].
        outputs = self.net(stacked)
        details = {"logits": outputs["out"]}
        if "aux" in outputs:
            details["aux_logits"] = outputs["aux"]  # [N, K, H, W], from layer3
        return details

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """template, sample [N, C, H, W] in [0, 1] -> logits [N, K, H, W] (chapter 9)."""
        return self.forward_details(template, sample)["logits"]

    def training_losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and, with ``aux_loss``, the auxiliary head's weighted focal loss
        (chapter 9)."""
        details = self.forward_details(batch["template"], batch["sample"])
        extra = {}
        if "aux_logits" in details:
            extra["aux_focal"] = self.aux_weight * focal_loss(details["aux_logits"],
                                                              batch["mask"])
        return details["logits"], extra
