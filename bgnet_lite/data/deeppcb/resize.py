"""From 640 px to the output size, and the optional synthetic misalignment of the template
with its flow (chapter 1, "The problem")."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .config import CLASSES, FLOW_STRIDE


def _classes_present(mask: np.ndarray) -> list[int]:
    """Class ids (1..6) that occur in a mask, ascending."""
    counts = np.bincount(mask.ravel(), minlength=len(CLASSES))
    return [int(c) + 1 for c in np.flatnonzero(counts[1:])]


def _area_resize_axis(values: np.ndarray, bounds: np.ndarray, ratio: float,
                      axis: int) -> np.ndarray:
    """Exact area average along one axis: output k averages the input over
    ``[bounds[k], bounds[k + 1])`` (input pixel units, width ``ratio``), from the
    piecewise-linear cumulative sum (no BLAS, so it stays fast in busy worker processes)."""
    n = values.shape[axis]
    cumulative = np.concatenate([np.zeros_like(np.take(values, [0], axis=axis)),
                                 np.cumsum(values, axis=axis)], axis=axis)  # n + 1 along axis
    index = np.minimum(np.floor(bounds).astype(np.int64), n - 1)
    shape = [1] * values.ndim
    shape[axis] = len(bounds)
    fraction = (bounds - index).reshape(shape)
    integral = np.take(cumulative, index, axis=axis) + fraction * np.take(values, index, axis=axis)
    return np.diff(integral, axis=axis) / ratio


def _area_resize(image: np.ndarray, size: int, window=None) -> np.ndarray:
    """``[H, W]`` -> ``[size, size]`` area average (float64).  With ``window`` = (slice_y,
    slice_x) of the input that holds everything non-zero, only the output pixels touching it
    are computed (the rest is 0)."""
    out_slices, in_slices, bounds, ratios = [], [], [], []
    for axis, n in enumerate(image.shape):
        ratio = n / size
        start, stop = (0, n) if window is None else (window[axis].start, window[axis].stop)
        first = int(np.floor(start / ratio))
        last = min(size, int(np.ceil(stop / ratio)))
        lo, hi = int(np.floor(first * ratio)), min(n, int(np.ceil(last * ratio)))
        out_slices.append(slice(first, last))
        in_slices.append(slice(lo, hi))
        bounds.append(np.arange(first, last + 1) * ratio - lo)
        ratios.append(ratio)
    values = image[tuple(in_slices)].astype(np.float64)
    values = _area_resize_axis(values, bounds[0], ratios[0], 0)
    values = _area_resize_axis(values, bounds[1], ratios[1], 1)
    if window is None:
        return values
    out = np.zeros((size, size))
    out[tuple(out_slices)] = values
    return out


def resize_binary(image_bin: np.ndarray, size: int) -> np.ndarray:
    """Area-average a bool ``[H, W]`` image to ``[size, size]``, threshold at 0.5 (chapter 1)."""
    return _area_resize(image_bin, size) >= 0.5


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a class-id mask by per-class max pooling (chapter 1): an output pixel gets the
    class covering the largest share of its footprint among the classes that touch it at all,
    so thin defects survive (nearest-neighbour sampling would drop 1-2 px defects)."""
    out = np.zeros((size, size), dtype=np.uint8)
    best_cover = np.zeros((size, size))
    for cls, window in enumerate(ndimage.find_objects(mask), 1):
        if window is None:
            continue
        cover = _area_resize(mask == cls, size, window)  # [size, size] share per output pixel
        wins = (cover > 1e-9) & (cover > best_cover)
        out[wins] = cls
        best_cover = np.where(wins, cover, best_cover)
    return out


def _flow_stride(size: int) -> int:
    return next(s for s in (FLOW_STRIDE, 2, 1) if size % s == 0)


def misalign_template(template_bin: np.ndarray, shift_yx: tuple[float, float],
                      misalign: float, rng: np.random.Generator):
    """Warp the (already resized) template by a random rotation + shift (chapter 1) and return
    ``(warped_template_bin, flow)``.

    ``shift_yx`` is the estimated correspondence shift at this resolution: sample pixel
    ``p`` shows original template point ``p - shift``.  The warp is
    ``new_template(q) = template(R(q - c) + c + t)`` (bilinear, thresholded at 0.5, no copper
    outside), with angle uniform in +-``misalign*50`` degrees and ``t`` uniform in
    +-``misalign*N`` px.  ``flow`` is ``[2, N/s, N/s]`` (x, y) new-template coordinates of the
    sample pixel centres (io.py), NaN where the template does not show that point.
    """
    size = template_bin.shape[0]
    centre = (size - 1) / 2.0
    if misalign > 0:
        angle = np.deg2rad(rng.uniform(-misalign * 50.0, misalign * 50.0))
        t_x, t_y = rng.uniform(-misalign * size, misalign * size, 2)
    else:
        angle, t_x, t_y = 0.0, 0.0, 0.0
    cos, sin = np.cos(angle), np.sin(angle)

    warped = template_bin
    if misalign > 0:
        q_y, q_x = np.mgrid[0:size, 0:size].astype(np.float64)  # [N, N] each
        src_x = cos * (q_x - centre) - sin * (q_y - centre) + centre + t_x
        src_y = sin * (q_x - centre) + cos * (q_y - centre) + centre + t_y
        warped = ndimage.map_coordinates(template_bin.astype(np.float64), [src_y, src_x],
                                         order=1, mode="constant", cval=0.0) >= 0.5

    stride = _flow_stride(size)
    grid = (np.arange(size // stride) + 0.5) * stride - 0.5
    p_y, p_x = np.meshgrid(grid, grid, indexing="ij")  # [N/s, N/s] sample pixel centres
    c_x, c_y = p_x - shift_yx[1], p_y - shift_yx[0]  # original template point
    # Invert the warp: q = R^T (c - centre - t) + centre.
    d_x, d_y = c_x - centre - t_x, c_y - centre - t_y
    q_x = cos * d_x + sin * d_y + centre
    q_y = -sin * d_x + cos * d_y + centre
    lo, hi = -0.5, size - 0.5
    visible = ((c_x >= lo) & (c_x <= hi) & (c_y >= lo) & (c_y <= hi)
               & (q_x >= lo) & (q_x <= hi) & (q_y >= lo) & (q_y <= hi))
    flow = np.stack([np.where(visible, q_x, np.nan), np.where(visible, q_y, np.nan)])
    return warped, flow.astype(np.float32)
