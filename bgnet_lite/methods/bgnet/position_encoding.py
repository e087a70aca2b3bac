"""Two-dimensional sine positional encoding, eq. 9-10 (chapter 3, "Positional encoding").

Attention treats a feature map as a set of ``L = H * W`` vectors and forgets where each one was.
Eq. 9 gives every position ``(x, y)`` its own ``C``-dimensional code, four channels per frequency::

    channel 4k     sin(x * w_k)        channel 4k + 2   sin(y * w_k)
    channel 4k + 1 cos(x * w_k)        channel 4k + 3   cos(y * w_k)
    w_k = 1 / 10000^(2k / C),  k = 0 .. C/4 - 1

``x`` is the column index and ``y`` the row index, both counted from 0.  Eq. 10 adds the code to
the features.  The exponent is ``2k / C`` exactly as printed.  LoFTR's (fixed) code uses
``2k / (C/2)``, which squeezes the frequencies twice as fast; its first release had an operator
precedence bug (``-log(10000) / C // 2`` evaluates to -1) that made ``w_k = e^(-2k)``.
Chapter 3 computes all three.
"""

from __future__ import annotations

import torch
from torch import nn

FREQUENCY_BASE = 10000.0


def sine_position_encoding(
    channels: int,
    height: int,
    width: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Eq. 9: the ``[C, H, W]`` positional code of an ``H x W`` feature map (chapter 3).

    Raises ValueError unless ``channels`` is a positive multiple of 4 (each frequency needs four
    channels: sin/cos of x and sin/cos of y).
    """
    if channels <= 0 or channels % 4 != 0:
        raise ValueError(
            f"positional encoding needs channels divisible by 4 (sin x, cos x, sin y, cos y per "
            f"frequency), got {channels}; use a feature width such as 64, 128 or 256"
        )
    if height <= 0 or width <= 0:
        raise ValueError(f"feature map size must be positive, got {height}x{width}")
    # float64 on the CPU for accuracy (positions times frequencies), cast once at the end;
    # some accelerators have no float64
    k = torch.arange(channels // 4, dtype=torch.float64)
    omega = 1.0 / FREQUENCY_BASE ** (2.0 * k / channels)  # [C/4]
    x_phase = torch.arange(width, dtype=torch.float64)[None, :] * omega[:, None]  # [C/4, W]
    y_phase = torch.arange(height, dtype=torch.float64)[None, :] * omega[:, None]  # [C/4, H]

    encoding = torch.empty(channels // 4, 4, height, width, dtype=torch.float64)
    encoding[:, 0] = torch.sin(x_phase)[:, None, :]  # varies along x, constant along y
    encoding[:, 1] = torch.cos(x_phase)[:, None, :]
    encoding[:, 2] = torch.sin(y_phase)[:, :, None]  # varies along y, constant along x
    encoding[:, 3] = torch.cos(y_phase)[:, :, None]
    # [C/4, 4, H, W] -> [C, H, W]: channel 4k + j is encoding[k, j]
    return encoding.reshape(channels, height, width).to(device=device, dtype=dtype)


class PositionEncodingSine(nn.Module):
    """Eq. 10: add the eq. 9 code to a batch of feature maps ``[N, C, H, W]`` (chapter 3).

    The code is recomputed for each input size (cheap, and any ``H x W`` works); it is not a
    parameter and not part of the state dict.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        sine_position_encoding(channels, 1, 1)  # validate channels now, not at the first forward
        self.channels = channels

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.dim() != 4 or feats.shape[1] != self.channels:
            raise ValueError(
                f"expected feature maps [N, {self.channels}, H, W], got {tuple(feats.shape)}"
            )
        height, width = feats.shape[-2:]
        encoding = sine_position_encoding(
            self.channels, height, width, device=feats.device, dtype=feats.dtype
        )  # [C, H, W]
        return feats + encoding[None]  # [N, C, H, W]

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
