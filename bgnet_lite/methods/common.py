"""What every compared method shares: pair checks, the 6-channel input, ImageNet normalisation
and the one policy for pretrained weights (chapter 9, "The competitors").

Weights policy (the same for every method, BGNet included): ``weights="none"`` builds with
random initialisation; ``"imagenet"`` loads the library's ImageNet weights (from the local
cache, else a download) and fails with a message naming the cache file; ``"auto"`` tries like
``"imagenet"`` and on failure warns and falls back to random initialisation.  A failed download
is tried once per process.  The model records ``pretrained`` (True/False) for ``run.json``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable

import torch
from torch import nn

WEIGHT_CHOICES = ("auto", "imagenet", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_FAILED: dict[str, str] = {}  # what -> reason of this process's failed load


def check_weights_choice(weights: str) -> None:
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {WEIGHT_CHOICES}, got {weights!r}")


def pretrained_state(what: str, weights: str, load: Callable[[], dict], hint: str) -> dict | None:
    """``load()``'s state dict under the weights policy above, or None (chapter 9).

    what: a name for messages and the once-per-process memory ("ImageNet ResNet-50").
    hint: how to get the file offline (e.g. the URL and the cache path)."""
    check_weights_choice(weights)
    if weights == "none":
        return None
    try:
        if weights == "auto" and what in _FAILED:
            # an offline download attempt can take ~10 s: try once per process in "auto"
            raise OSError(_FAILED[what])
        # torch.hub writes "Downloading: ..." to stdout before any attempt; the outcome is
        # reported below (a warning on failure) and in run.json's "initialisation"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return load()
    except Exception as error:  # offline, proxy, corrupt cache file: all mean "no weights"
        _FAILED.setdefault(what, f"earlier in this process: {type(error).__name__}: {error}")
        message = f"could not load {what} weights ({type(error).__name__}: {error}); {hint}"
        if weights == "imagenet":
            raise RuntimeError(message + ", or pass weights='auto' or 'none'") from error
        warnings.warn(f"{message}. Using RANDOM initialisation instead (weights='auto'); "
                      "results will be worse than with pretrained weights.", stacklevel=3)
        return None


def describe_initialisation(pretrained: bool | None) -> str:
    """What a model started from, for ``run.json`` and the chapters' provenance (chapter 9):
    "imagenet", "random (...why...)", or "no pretrained part" (None: nothing to load)."""
    if pretrained is None:
        return "no pretrained part"
    if pretrained:
        return "imagenet"
    if _FAILED:
        reasons = "; ".join(f"{what}: {why.removeprefix('earlier in this process: ')}"
                            for what, why in _FAILED.items())
        return f"random (ImageNet weights could not be loaded: {reasons})"
    return "random (weights='none')"


def torchvision_state(arch: str, weights: str) -> dict | None:
    """ImageNet weights of a torchvision classification model (e.g. "resnet50", "vgg16_bn")
    under the weights policy, or None (chapter 9)."""
    check_weights_choice(weights)
    if weights == "none":
        return None
    import torchvision

    enum = torchvision.models.get_model_weights(arch).DEFAULT
    cache = f"{torch.hub.get_dir()}/checkpoints/{enum.url.rsplit('/', 1)[-1]}"

    def load() -> dict:
        return torch.hub.load_state_dict_from_url(enum.url, map_location="cpu", progress=False,
                                                  check_hash=True, weights_only=True)

    return pretrained_state(f"ImageNet {arch}", weights, load,
                            f"to use them offline, put {enum.url} at {cache}")


def check_pair(template: torch.Tensor, sample: torch.Tensor, in_channels: int,
               multiple: int = 32) -> None:
    """Refuse a pair the method cannot take, naming the fix (chapter 9)."""
    if template.shape != sample.shape:
        raise ValueError(f"template and sample must have the same shape, got "
                         f"{tuple(template.shape)} and {tuple(sample.shape)}")
    if template.dim() != 4 or template.shape[1] != in_channels:
        raise ValueError(f"expected [N, {in_channels}, H, W] images (in_channels={in_channels}),"
                         f" got {tuple(template.shape)}")
    height, width = template.shape[-2:]
    if height < multiple or width < multiple:
        raise ValueError(f"images must be at least {multiple} x {multiple} pixels, "
                         f"got {height} x {width}")


def pad_to_multiple(images: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad H and W up to a multiple (encoders that need it); returns the original size
    for ``crop``.  images [N, C, H, W]."""
    height, width = images.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        images = nn.functional.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
    return images, (height, width)


def crop(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return logits[..., :size[0], :size[1]]


class ImageNetNormalize(nn.Module):
    """[0, 1] images -> ImageNet mean/std, for ``copies`` RGB images stacked on channels;
    greyscale (1 channel per image) is repeated to RGB first (chapter 9)."""

    def __init__(self, in_channels: int, copies: int = 1):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.in_channels, self.copies = in_channels, copies
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN * copies).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD * copies).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:  # [N, copies, H, W] -> [N, 3 * copies, H, W]
            images = images.repeat_interleave(3, dim=1)
        return (images - self.mean) / self.std


def concat_pair(template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """Template then sample stacked on channels: [N, 2C, H, W] (the "classical" input)."""
    return torch.cat([template, sample], dim=1)


def widen_first_conv(conv: nn.Conv2d, copies: int) -> nn.Conv2d:
    """A first convolution taking ``copies`` images stacked on channels, e.g. 6 = template +
    sample (chapters 2 and 9).

    Each copy gets the original kernel divided by ``copies``, so a stack of identical images
    gives exactly the pretrained response (a concatenating network keeps its ImageNet start).
    """
    wide = nn.Conv2d(
        conv.in_channels * copies, conv.out_channels, kernel_size=conv.kernel_size,
        stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        wide.weight.copy_(conv.weight.repeat(1, copies, 1, 1) / copies)  # [C_out, k C_in, ., .]
        if conv.bias is not None:
            wide.bias.copy_(conv.bias)
    return wide


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Convolution (no bias, same padding), BatchNorm, ReLU: the compared methods' common
    building block (chapter 9)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
