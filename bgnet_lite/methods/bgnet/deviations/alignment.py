"""Match-guided alignment of the unmatched scales (chapter 6, "Aligning the fine scales").

A deviation from the paper, behind ``BGNetConfig.align_fine_scales`` (off = the paper).  The
paper subtracts along the matches only at 1/8 and 1/32 (eq. 8) and subtracts the other three
scales in place.  When the background has moved by more than a few pixels, the in-place
differences at 1/2, 1/4 and 1/16 are full of background edges, and chapter 7 measures that the
decoder does not learn past them within a laptop budget.  With this flag the 1/8 matches also
steer those scales: a similarity transform (shift, rotation, scale) is fitted to the matched
cell centres by least squares, and the template features of every unmatched scale are
resampled at the transformed sample positions before the subtraction.

Coordinates are "edge" pixel coordinates: the image spans ``[0, W] x [0, H]``, so the centre of
feature cell ``(u, v)`` at stride ``s`` is ``((u + 0.5) s, (v + 0.5) s)``.  A transform maps a
sample point ``q`` to the template point ``p = A q + t``; it is stored as ``[N, 2, 3]`` rows
``[A | t]``.  The fit is discrete (no gradient); the resampling is differentiable in the
template features, like the gather of eq. 8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _stride_yx(stride: float | tuple[float, float]) -> tuple[float, float]:
    """One stride for both axes, or a (y, x) pair, as a (y, x) pair."""
    return (stride, stride) if isinstance(stride, (int, float)) else tuple(stride)


def cell_centres(
    height: int, width: int, stride: float | tuple[float, float], device=None
) -> torch.Tensor:
    """Centres of the cells of an ``height x width`` map at ``stride`` pixels (one number, or
    (y, x) for an image that the map does not divide evenly): ``[H*W, 2]`` (x, y), row-major
    like the matching's cell index ``y * W + x`` (chapter 6)."""
    stride_y, stride_x = _stride_yx(stride)
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([(xs.flatten() + 0.5) * stride_x, (ys.flatten() + 0.5) * stride_y], dim=1)


def _similarity_from_points(
    sample_points: torch.Tensor, template_points: torch.Tensor
) -> torch.Tensor:
    """Least-squares ``p = [[a, -b], [b, a]] q + t`` for points ``[M, 2]`` -> ``[2, 3]``.

    Closed form: with centred points, ``a = sum(q . p) / sum |q|^2`` and
    ``b = sum(q x p) / sum |q|^2``.  One point gives a pure translation.
    """
    sample_mean = sample_points.mean(dim=0)
    template_mean = template_points.mean(dim=0)
    q = sample_points - sample_mean
    p = template_points - template_mean
    spread = (q * q).sum()
    if spread > 1e-6:
        a = (q * p).sum() / spread
        b = (q[:, 0] * p[:, 1] - q[:, 1] * p[:, 0]).sum() / spread
    else:
        a, b = torch.ones(()), torch.zeros(())
    rotation = torch.stack([torch.stack([a, -b]), torch.stack([b, a])]).to(sample_points)
    shift = template_mean - rotation @ sample_mean
    return torch.cat([rotation, shift[:, None]], dim=1)


def fit_similarity(
    sample_to_template: torch.Tensor, feat_hw: tuple[int, int],
    stride: float | tuple[float, float], *, outlier_px: float | None = None,
) -> torch.Tensor:
    """Similarity transform sample -> template fitted to the matches of one scale (chapter 6).

    sample_to_template ``[N, S]`` (template cell per sample cell, -1 = unmatched) on maps of
    ``feat_hw`` cells at ``stride`` pixels (see :func:`cell_centres`).  Returns ``[N, 2, 3]``.
    After a first fit, matches whose template cell lies more than ``outlier_px`` (default 1.5
    cells) from the fitted point are dropped and the fit is repeated.  No match -> the identity.
    """
    if sample_to_template.dim() != 2 or sample_to_template.shape[1] != feat_hw[0] * feat_hw[1]:
        raise ValueError(
            f"sample_to_template must be [N, {feat_hw[0] * feat_hw[1]}] for feature maps "
            f"{feat_hw}, got {tuple(sample_to_template.shape)}"
        )
    outlier_px = 1.5 * max(_stride_yx(stride)) if outlier_px is None else outlier_px
    centres = cell_centres(*feat_hw, stride, device=sample_to_template.device)  # [S, 2]
    transforms = []
    for cells in sample_to_template:  # [S] per pair
        matched = cells >= 0
        if not matched.any():
            transforms.append(torch.eye(2, 3, device=centres.device))  # the identity
            continue
        sample_points, template_points = centres[matched], centres[cells[matched]]
        transform = _similarity_from_points(sample_points, template_points)
        residual = (sample_points @ transform[:, :2].T + transform[:, 2] - template_points)
        inliers = residual.norm(dim=1) <= outlier_px
        if inliers.any() and not inliers.all():
            transform = _similarity_from_points(sample_points[inliers], template_points[inliers])
        transforms.append(transform)
    return torch.stack(transforms)  # [N, 2, 3]


def warp_template(
    template_map: torch.Tensor, transform: torch.Tensor, image_hw: tuple[int, int]
) -> torch.Tensor:
    """Template features resampled at ``transform`` (sample cell centres) (chapter 6).

    template_map ``[N, C, h, w]`` covering an image of ``image_hw`` pixels, transform
    ``[N, 2, 3]`` from :func:`fit_similarity` -> ``[N, C, h, w]`` aligned with the sample's map
    at the same scale.  Bilinear; points outside the template read 0, so the difference there
    keeps ``f^S`` as an unmatched cell of eq. 8 does.
    """
    if template_map.dim() != 4 or transform.shape != (template_map.shape[0], 2, 3):
        raise ValueError(
            f"expected template_map [N, C, h, w] and transform [N, 2, 3], got "
            f"{tuple(template_map.shape)} and {tuple(transform.shape)}"
        )
    height, width = template_map.shape[-2:]
    image_h, image_w = image_hw
    stride = (image_h / height, image_w / width)
    centres = cell_centres(height, width, stride, device=template_map.device)  # [h*w, 2]
    points = centres @ transform[:, :, :2].transpose(1, 2) + transform[:, None, :, 2]  # [N, hw, 2]
    # grid_sample (align_corners=False) reads edge coordinate e at 2 e / size - 1
    size = torch.tensor([image_w, image_h], device=points.device, dtype=points.dtype)
    grid = (2 * points / size - 1).view(-1, height, width, 2).to(template_map.dtype)
    return F.grid_sample(
        template_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
