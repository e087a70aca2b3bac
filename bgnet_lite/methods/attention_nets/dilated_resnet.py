"""The dilated ResNet encoder shared by CCNet, DANet and DUNet (chapter 9).

Source: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, with the last
stages dilated instead of strided (Yu & Koltun, ICLR 2016; Chen et al., DeepLab, TPAMI 2018)
as CCNet (Huang et al., ICCV 2019) and DANet (Fu et al., CVPR 2019) use it; torchvision's
``resnet50`` / ``resnet101`` with ``replace_stride_with_dilation``.

GUESSED (the paper's comparison gives no backbone): how the template enters a single-image
network. The template and the sample are stacked on channels (6 ImageNet-normalised channels)
and the first convolution is widened by ``common.widen_first_conv``, which keeps the
ImageNet weights meaningful (chapter 9).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from bgnet_lite.methods import common
from bgnet_lite.methods.common import conv_bn_relu  # noqa: F401  (the heads' import)

BACKBONES = ("resnet50", "resnet101")
STAGE_CHANNELS = (256, 512, 1024, 2048)  # layer1 .. layer4 of a bottleneck ResNet
DILATIONS = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}


class DilatedResNet(nn.Module):
    """Template ⊕ sample -> ResNet stage features at strides 4, 8, and ``output_stride`` for
    layer3-4 (chapter 9).

    ``output_stride`` 8 dilates layer3 and layer4 (CCNet, DANet), 16 only layer4."""

    def __init__(self, arch: str = "resnet50", weights: str = "auto", in_channels: int = 3,
                 output_stride: int = 8):
        super().__init__()
        if arch not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {arch!r}")
        if output_stride not in DILATIONS:
            raise ValueError(f"output_stride must be one of {tuple(DILATIONS)}, "
                             f"got {output_stride}")
        state = common.torchvision_state(arch, weights)
        net = getattr(torchvision.models, arch)(
            weights=None, replace_stride_with_dilation=DILATIONS[output_stride])
        if state is not None:
            net.load_state_dict(state)
        self.pretrained = state is not None
        self.normalize = common.ImageNetNormalize(in_channels, copies=2)
        self.stem = nn.Sequential(common.widen_first_conv(net.conv1, copies=2), net.bn1,
                                  net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4)
        self.output_stride = output_stride

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> list[torch.Tensor]:
        """Features of layer1 .. layer4 for the pair stacked on channels (chapter 9)."""
        pair = self.normalize(common.concat_pair(template, sample))  # [N, 6, H, W]
        layer1 = self.layer1(self.stem(pair))  # [N, 256, H/4, W/4]
        layer2 = self.layer2(layer1)  # [N, 512, H/8, W/8]
        layer3 = self.layer3(layer2)  # [N, 1024, H/8 .. H/16, .]
        layer4 = self.layer4(layer3)  # [N, 2048, H/os, W/os]
        return [layer1, layer2, layer3, layer4]


def fcn_head(in_channels: int, mid_channels: int, num_classes: int) -> nn.Sequential:
    """3x3 conv-BN-ReLU, Dropout 0.1, 1x1 classifier: the auxiliary (deep supervision) head
    on layer3 of PSPNet-style networks, CCNet's "DSN" head (chapter 9)."""
    return nn.Sequential(conv_bn_relu(in_channels, mid_channels), nn.Dropout2d(0.1),
                         nn.Conv2d(mid_channels, num_classes, 1))


def upsample_to(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of logits to the (padded) input size (chapter 9)."""
    return nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)
