"""Where a sample pixel looks in the scene: the inverse global similarity, the ground-truth
correspondence (flow) and bilinear resampling of canvas images (chapter 1, "The problem")."""

from __future__ import annotations

import math

import numpy as np


def _inverse_similarity(params, size, xs, ys):
    """Scene point (template pixel coordinates) seen at sample pixel (xs, ys)."""
    centre = (size - 1) / 2
    theta = math.radians(params["angle_deg"])
    dx = xs - centre - params["shift_x"]
    dy = ys - centre - params["shift_y"]
    cos, sin = math.cos(theta), math.sin(theta)
    # R(-theta) (q - c - t) / scale
    px = centre + (cos * dx + sin * dy) / params["scale"]
    py = centre + (-sin * dx + cos * dy) / params["scale"]
    return px, py


def _correspondence(scene, params, offsets, sample_label, size, xs, ys):
    """Flow at sample pixels (xs, ys): [2, *xs.shape] float32 with NaN where not visible."""
    px, py = _inverse_similarity(params, size, xs, ys)
    pad = scene.pad
    limit = sample_label.shape[0] - 1
    ix = np.clip(np.rint(px + pad).astype(np.int64), 0, limit)
    iy = np.clip(np.rint(py + pad).astype(np.int64), 0, limit)
    label = sample_label[iy, ix]
    shifts = np.concatenate([np.zeros((1, 2)), offsets.astype(np.float64)])  # [K + 1, 2]
    fx = px - shifts[label, 0]
    fy = py - shifts[label, 1]
    inside = (fx >= -0.5) & (fx <= size - 0.5) & (fy >= -0.5) & (fy <= size - 0.5)
    tx = np.clip(np.rint(fx + pad).astype(np.int64), 0, limit)
    ty = np.clip(np.rint(fy + pad).astype(np.int64), 0, limit)
    visible = inside & (scene.template_label[ty, tx] == label)
    flow = np.stack([fx, fy]).astype(np.float32)
    flow[:, ~visible] = np.nan
    return flow


class _Bilinear:
    """Bilinear sampling of canvas images at fixed scene points (px, py), the indices and
    weights computed once and reused for the colour image and every defect-mask attempt."""

    def __init__(self, px, py, pad, canvas):
        x = np.clip(px + pad, 0, canvas - 1).astype(np.float32)
        y = np.clip(py + pad, 0, canvas - 1).astype(np.float32)
        x0 = np.minimum(np.floor(x).astype(np.int64), canvas - 2)
        y0 = np.minimum(np.floor(y).astype(np.int64), canvas - 2)
        fx, fy = (x - x0).ravel(), (y - y0).ravel()
        top_left = (y0 * canvas + x0).ravel()
        # flat indices of the 4 neighbours and their weights: [4, N]
        self.index = np.stack([top_left, top_left + 1, top_left + canvas, top_left + canvas + 1])
        self.weight = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
        self.shape = px.shape

    def __call__(self, image):
        channels = image.shape[2:]
        flat = image.reshape(-1, *channels)
        weight = self.weight.reshape(4, -1, *([1] * len(channels)))
        out = (np.take(flat, self.index, axis=0) * weight).sum(axis=0)
        return out.reshape(*self.shape, *channels)
