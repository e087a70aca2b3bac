"""Local matched subtraction at the unmatched scales (chapter 6, "Local matching").

A deviation from the paper, behind ``BGNetConfig.local_match_px`` (0 = off, the paper).  The
paper subtracts along the matches at 1/8 and 1/32 (eq. 8) and in place at 1/2, 1/4 and 1/16.
``align_fine_scales`` (``alignment.py``) moves the template of those three scales along one
similarity transform, but the components of a device also move on their own by a few pixels,
so their edges still light up the fine differences.  This module applies eq. 8's idea locally:
every sample cell ``p`` of such a scale is matched to the template cell with the nearest
feature (squared Euclidean distance) inside a ``(2r + 1)^2`` window around ``p`` (around the
similarity-aligned point when the template was warped first), and that template feature is
subtracted:

    d*(p) = argmin_{|d_x|, |d_y| <= r} || f^S(p) - f^T(p + d) ||^2,
    diff(p) = f^S(p) - f^T(p + d*(p)).

Ties keep the smaller displacement (``d = 0`` first), cells outside the map are never chosen,
and, as in eq. 8, the choice is discrete (no gradient) while the subtraction passes gradients
to both feature maps.  The radius is given in image pixels and converted per scale,
``r = floor(local_match_px / stride + 1/2)``, so 6 px is 3 cells at 1/2, 2 at 1/4 (1.5 rounds
up) and 0 (no search) at 1/16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def window_radius(local_match_px: float, stride: float) -> int:
    """Search radius in cells at ``stride`` for a radius of ``local_match_px`` image pixels
    (chapter 6); halves round up, as Python's ``round`` would not (1.5 -> 2, 2.5 -> 3)."""
    if local_match_px < 0:
        raise ValueError(f"local_match_px must be >= 0, got {local_match_px}")
    return int(local_match_px / stride + 0.5)


def window_displacements(radius: int) -> list[tuple[int, int]]:
    """Every (dy, dx) with |dy|, |dx| <= radius, nearest first: (0, 0) leads, so a tie keeps
    the in-place (or aligned) cell (chapter 6)."""
    offsets = range(-radius, radius + 1)
    return sorted(((dy, dx) for dy in offsets for dx in offsets),
                  key=lambda d: (max(abs(d[0]), abs(d[1])), abs(d[0]) + abs(d[1]), d))


@torch.no_grad()
def local_best_offsets(
    sample_map: torch.Tensor, template_map: torch.Tensor, radius: int
) -> torch.Tensor:
    """Per sample cell, the flat template cell index with the nearest feature in the window
    (chapter 6).  Maps ``[N, C, H, W]`` -> ``[N, H*W]`` indices into ``H*W``.

    One pass per displacement keeps memory at a few ``[N, H, W]`` maps instead of an
    ``[N, C * (2r + 1)^2, H * W]`` unfold.
    """
    batch, _, height, width = sample_map.shape
    device = sample_map.device
    sample = sample_map.float()
    padded = F.pad(template_map.float(), (radius, radius, radius, radius))
    ys = torch.arange(height, device=device)[:, None].expand(height, width)
    xs = torch.arange(width, device=device)[None, :].expand(height, width)
    best_dist = torch.full((batch, height, width), float("inf"), device=device)
    best_index = (ys * width + xs).expand(batch, height, width).clone()
    # reused buffers: the [N, C, H, W] temporaries, not the arithmetic, dominate the CPU time
    difference = torch.empty_like(sample)
    dist = torch.empty_like(best_dist)
    for dy, dx in window_displacements(radius):
        inside = (ys + dy >= 0) & (ys + dy < height) & (xs + dx >= 0) & (xs + dx < width)
        shifted = padded[:, :, radius + dy: radius + dy + height, radius + dx: radius + dx + width]
        torch.sub(sample, shifted, out=difference)
        torch.sum(difference.square_(), dim=1, out=dist)  # [N, H, W]
        better = (dist < best_dist) & inside
        best_dist = torch.where(better, dist, best_dist)
        best_index = torch.where(better, (ys + dy) * width + (xs + dx), best_index)
    return best_index.flatten(1)  # [N, H*W]


def local_matched_subtraction(
    sample_map: torch.Tensor, template_map: torch.Tensor, radius: int
) -> torch.Tensor:
    """``f^S(p) - f^T(p + d*(p))`` with the nearest template feature in a ``(2r+1)^2`` window
    (chapter 6).  Maps ``[N, C, H, W]`` (same shape) -> ``[N, C, H, W]``; radius 0 is the plain
    in-place difference."""
    if sample_map.dim() != 4 or sample_map.shape != template_map.shape:
        raise ValueError(
            "local_matched_subtraction expects two [N, C, H, W] maps of the same shape, got "
            f"{tuple(sample_map.shape)} and {tuple(template_map.shape)}"
        )
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if radius == 0:
        return sample_map - template_map
    batch, channels, height, width = sample_map.shape
    best_index = local_best_offsets(sample_map, template_map, radius)  # [N, H*W]
    index = best_index[:, None, :].expand(-1, channels, -1)  # [N, C, H*W]
    matched_template = template_map.flatten(2).gather(2, index)  # [N, C, H*W]
    return sample_map - matched_template.view(batch, channels, height, width)
