"""Anti-aliased drawing on the scene canvas: exact pixel coverage of rectangles, polygons,
strokes and bonding wires, and smooth random fields for shading and grain
(chapter 1, "The problem").

Canvas pixel ``k`` covers ``[k - 0.5, k + 0.5]``; a coverage ("alpha") is the fraction of a
pixel inside the shape, which is what later becomes a defect mask after the warp.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

_SUPERSAMPLE = 4  # anti-aliasing factor for drawn shapes (wires, blobs, scratches)


def _smooth_field(rng, shape, cells, sigma=None) -> np.ndarray:
    """Low-frequency random field with unit-ish std: coarse noise upsampled (cubic)."""
    coarse = rng.normal(size=(cells, cells))
    field = ndimage.zoom(coarse, (shape[0] / cells, shape[1] / cells), order=3, mode="nearest")
    field = field[: shape[0], : shape[1]]
    if sigma:
        field = ndimage.gaussian_filter(field, sigma)
    return (field / (field.std() + 1e-6)).astype(np.float32)


def _grain_field(rng, shape, brushed_axis, scale) -> np.ndarray:
    """Surface grain: fine isotropic noise, or streaks along an axis for brushed metal."""
    noise = rng.normal(size=shape).astype(np.float32)
    if brushed_axis is None:
        grain = ndimage.gaussian_filter(noise, 0.6 * scale)
    else:
        sigma = [0.5 * scale, 0.5 * scale]
        sigma[brushed_axis] = 5.0 * scale
        grain = ndimage.gaussian_filter(noise, sigma)
    return (grain / (grain.std() + 1e-6)).astype(np.float32)


def _coverage_1d(coords, low, high):
    """Fraction of each unit pixel (centred at ``coords``) inside [low, high]."""
    return np.clip(np.minimum(coords + 0.5, high) - np.maximum(coords - 0.5, low), 0, 1)


def _rect_alpha(xs, ys, x0, y0, x1, y1):
    """Exact pixel coverage of an axis-aligned rectangle: [len(ys), len(xs)]."""
    return _coverage_1d(ys, y0, y1)[:, None] * _coverage_1d(xs, x0, x1)[None, :]


def _raster(points_list, canvas_hw, draw, margin, layers=1):
    """Anti-aliased coverage of shapes drawn by ``draw(ImageDraw, to_ss)`` on the bounding box
    of ``points_list`` (canvas (x, y)).  Returns (y0, x0, alpha [h, w]) or None if off-canvas;
    with ``layers=2`` the drawing is RGB and alpha is [h, w, 2] (red and green channels)."""
    allpts = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in points_list])
    height, width = canvas_hw
    x0 = max(int(math.floor(allpts[:, 0].min() - margin)) - 1, 0)
    y0 = max(int(math.floor(allpts[:, 1].min() - margin)) - 1, 0)
    x1 = min(int(math.ceil(allpts[:, 0].max() + margin)) + 2, width)
    y1 = min(int(math.ceil(allpts[:, 1].max() + margin)) + 2, height)
    if x1 <= x0 or y1 <= y0:
        return None
    ss = _SUPERSAMPLE
    image = Image.new("L" if layers == 1 else "RGB", ((x1 - x0) * ss, (y1 - y0) * ss), 0)

    def to_ss(points):
        # canvas pixel k covers [k - 0.5, k + 0.5]; supersampled pixel centres are integers
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return ((points - [x0, y0] + 0.5) * ss - 0.5).ravel().tolist()

    draw(ImageDraw.Draw(image), to_ss)
    # box-average the supersampled pixels (PIL's C reduce, far faster than a numpy mean)
    alpha = np.asarray(image.reduce(ss), dtype=np.float32)
    if layers > 1:
        alpha = alpha[..., :layers]
    return y0, x0, alpha / 255.0


def _ribbon(points, width):
    """Polygon of a polyline of the given width with mitred joints (one fill call instead of
    PIL's slow round joints)."""
    segments = np.diff(points, axis=0)
    segments /= np.maximum(np.hypot(segments[:, 0], segments[:, 1]), 1e-9)[:, None]
    seg_normals = np.stack([-segments[:, 1], segments[:, 0]], axis=1)  # [n - 1, 2]
    normals = np.concatenate(
        [seg_normals[:1], seg_normals[:-1] + seg_normals[1:], seg_normals[-1:]]
    )
    normals /= np.maximum(np.hypot(normals[:, 0], normals[:, 1]), 1e-9)[:, None]
    cos_half = np.ones(len(points))
    cos_half[1:-1] = np.sum(normals[1:-1] * seg_normals[:-1], axis=1)
    miter = normals / np.clip(cos_half, 0.5, 1.0)[:, None] * (width / 2)
    return np.concatenate([points + miter, (points - miter)[::-1]])


def _stroke(points, width, canvas_hw, end_radius=0.0, core_width=0.0):
    """Anti-aliased coverage of a polyline of the given width (canvas pixels), optionally
    with discs of ``end_radius`` at both ends (the ball/wedge bonds of a wire).  With
    ``core_width`` the patch is [h, w, 2]: the stroke and a narrower core along its middle."""
    points = np.asarray(points, dtype=np.float64)
    body = _ribbon(points, width)
    core = _ribbon(points, core_width) if core_width else None
    # the core lies inside the body, so drawing it second with (255, 255, 0) keeps the body
    body_fill = 255 if core is None else (255, 0, 0)

    def draw(canvas, to_ss):
        canvas.polygon(to_ss(body), fill=body_fill)
        if end_radius:
            ends = np.asarray(to_ss(points[[0, -1]])).reshape(2, 2)
            r = end_radius * _SUPERSAMPLE
            for x, y in ends:
                canvas.ellipse((x - r, y - r, x + r, y + r), fill=body_fill)
        if core is not None:
            canvas.polygon(to_ss(core), fill=(255, 255, 0))

    margin = max(width, 2 * end_radius)
    return _raster([points], canvas_hw, draw, margin, layers=1 if core is None else 2)


# thinnest line (pixels) for wires and scratches: a thinner diagonal line has pixels of
# coverage < 0.5 all along it, and its mask would break into dots
_MIN_STROKE = 2.0


def _wire_width(config) -> float:
    return max(_MIN_STROKE, config.wire_width * config.size)


def _wire_alpha(points, config, canvas_hw, with_core=False):
    """Coverage patch of one bonding wire (cubic Bezier ``points`` [4, 2]) with its bonds;
    ``with_core`` adds the coverage of its specular core as a second layer."""
    count = max(12, int(np.abs(np.diff(points, axis=0)).sum() / 2))
    width = _wire_width(config)
    return _stroke(
        _bezier(points, count),
        width,
        canvas_hw,
        end_radius=0.9 * width,
        core_width=0.4 * width if with_core else 0.0,
    )


def _polygon(points, canvas_hw):
    def draw(canvas, to_ss):
        canvas.polygon(to_ss(points), fill=255)

    return _raster([points], canvas_hw, draw, 1.0)


def _full(patch, canvas_hw):
    """Place a (y0, x0, alpha) patch on a zero canvas."""
    alpha = np.zeros(canvas_hw, np.float32)
    if patch is not None:
        y0, x0, values = patch
        alpha[y0 : y0 + values.shape[0], x0 : x0 + values.shape[1]] = values
    return alpha


def _bezier(points: np.ndarray, count: int) -> np.ndarray:
    """Cubic Bezier through 4 control points: [count, 2]."""
    t = np.linspace(0.0, 1.0, count)[:, None]
    p0, p1, p2, p3 = points
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _blob(rng, center, radius, lobes=5, roughness=0.3, count=28) -> np.ndarray:
    """Irregular closed polygon: radius modulated by a few random harmonics."""
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    modulation = np.zeros(count)
    for k in range(2, 2 + lobes):
        modulation += rng.normal() / k * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    modulation = roughness * modulation / (np.abs(modulation).max() + 1e-6)
    radii = radius * (1 + modulation)
    return np.stack([center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)], 1)


def _luminance(rgb) -> float:
    rgb = np.asarray(rgb, dtype=np.float32)
    return float(
        0.299 * rgb[..., 0].mean() + 0.587 * rgb[..., 1].mean() + 0.114 * rgb[..., 2].mean()
    )


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
