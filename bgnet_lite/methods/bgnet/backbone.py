"""The Siamese feature extractor: a ResNet-18 giving five feature maps (chapter 2).

The paper (Sec. 3.3.1) uses ResNet-18 with ImageNet weights as both branches of a Siamese
network; "Siamese" only means that template and sample go through the *same* module, so this
file holds one ResNet-18 and ``BGNet`` calls it on both images.

Inputs are float images in [0, 1]; the backbone applies the ImageNet mean/std itself
(``normalize_input=True``) because that is what the pretrained weights expect, so the data
pipeline must not normalise again.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet18_Weights

from bgnet_lite.methods.common import (  # noqa: F401  (WEIGHT_CHOICES: config's import)
    IMAGENET_MEAN,
    IMAGENET_STD,
    WEIGHT_CHOICES,
    pretrained_state,
    widen_first_conv,
)

BACKBONE_CHANNELS = (64, 64, 128, 256, 512)  # channels of the five maps, 1/2 .. 1/32
BACKBONE_STRIDES = (2, 4, 8, 16, 32)  # image pixels per feature cell of the five maps
IMAGENET_WEIGHTS = ResNet18_Weights.IMAGENET1K_V1


def cached_weights_path() -> Path:
    """Where torchvision keeps the downloaded ImageNet ResNet-18 file (chapter 2).

    ``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth`` (default ``~/.cache/torch``): copy
    the file there by hand to use pretrained weights on a machine without internet.
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(IMAGENET_WEIGHTS.url)


def download_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """Download the torchvision ImageNet ResNet-18 weights into the hub cache (chapter 2)."""
    return torch.hub.load_state_dict_from_url(
        IMAGENET_WEIGHTS.url, map_location="cpu", progress=False, check_hash=True,
        weights_only=True,
    )


def load_imagenet_state_dict(weights: str) -> dict[str, torch.Tensor] | None:
    """Return the ImageNet ResNet-18 state dict, or None for random initialisation (chapter 2).

    ``weights="none"``: None. ``"imagenet"``: the cached file, else a download; a RuntimeError
    saying how to get the file if both fail. ``"auto"``: like ``"imagenet"`` but on failure a
    warning (random initialisation, and why) and None (``common.pretrained_state``).
    """
    cached = cached_weights_path()

    def load() -> dict[str, torch.Tensor]:
        if cached.is_file():
            return torch.load(cached, map_location="cpu", weights_only=True)
        return download_imagenet_state_dict()

    return pretrained_state("ImageNet ResNet-18", weights, load,
                            f"to use them offline, put {IMAGENET_WEIGHTS.url} at {cached}")


class ResNet18Backbone(nn.Module):
    """ResNet-18 returning the five feature maps the decoder fuses (chapter 2).

    in_channels: 1 (greyscale, repeated to 3), 3 (RGB) or 6 (S1: template and sample RGB
    stacked; conv1 is widened by ``widen_first_conv``).
    weights: "auto" | "imagenet" | "none" (see ``load_imagenet_state_dict``).
    """

    def __init__(
        self, in_channels: int = 3, weights: str = "auto", *, normalize_input: bool = True
    ):
        super().__init__()
        if in_channels not in (1, 3, 6):
            raise ValueError(f"in_channels must be 1, 3 or 6, got {in_channels}")
        self.in_channels = in_channels
        self.normalize_input = normalize_input
        resnet = torchvision.models.resnet18(weights=None)
        state_dict = load_imagenet_state_dict(weights)
        self.pretrained = state_dict is not None
        if state_dict is not None:
            resnet.load_state_dict(state_dict)
        conv1 = resnet.conv1 if in_channels != 6 else widen_first_conv(resnet.conv1, 2)
        self.stem = nn.Sequential(conv1, resnet.bn1, resnet.relu)  # -> 1/2
        self.pool = resnet.maxpool  # 1/2 -> 1/4
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2  # 1/4, 1/8
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4  # 1/16, 1/32
        rgb_copies = 2 if in_channels == 6 else 1
        self.register_buffer(
            "mean", torch.tensor(IMAGENET_MEAN * rgb_copies).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(IMAGENET_STD * rgb_copies).view(1, -1, 1, 1), persistent=False
        )

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images [N, in_channels, H, W] in [0, 1] -> 5 maps [N, C_i, H / s_i, W / s_i]."""
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"backbone expects [N, {self.in_channels}, H, W] images, got {tuple(images.shape)}"
            )
        if self.in_channels == 1:
            images = images.expand(-1, 3, -1, -1)  # [N, 3, H, W] greyscale as RGB
        if self.normalize_input:
            images = (images - self.mean) / self.std
        half = self.stem(images)  # [N, 64, H/2, W/2]
        quarter = self.layer1(self.pool(half))  # [N, 64, H/4, W/4]
        eighth = self.layer2(quarter)  # [N, 128, H/8, W/8]
        sixteenth = self.layer3(eighth)  # [N, 256, H/16, W/16]
        thirty_second = self.layer4(sixteenth)  # [N, 512, H/32, W/32]
        return [half, quarter, eighth, sixteenth, thirty_second]
