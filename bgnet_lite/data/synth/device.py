"""The parts of a device: materials, SMD components and their sprites, pin geometry, and
bonding wires (chapter 1, "The problem").

Components live on the padded scene canvas (template positions); a sample moves each of them
by a whole-pixel offset, so a moved component shows exactly the template's pixels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .raster import _rect_alpha, _wire_alpha

BASE_STYLES = (
    # name, rgb (0..1), brushed metal, grain amplitude
    ("alumina", (0.86, 0.83, 0.76), False, 0.05),
    ("aluminium_nitride", (0.66, 0.67, 0.62), False, 0.05),
    ("nickel", (0.62, 0.63, 0.66), True, 0.06),
    ("gold_plate", (0.78, 0.63, 0.33), True, 0.05),
    ("kovar_dark", (0.38, 0.39, 0.42), True, 0.07),
    ("ltcc_green", (0.36, 0.47, 0.40), False, 0.06),
)
GOLD = np.array([0.93, 0.74, 0.36], np.float32)
SILVER = np.array([0.80, 0.80, 0.83], np.float32)
_WIRE_HIGHLIGHT = np.array([1.0, 0.96, 0.8], np.float32)


@dataclass
class _Component:
    kind: str  # chip | die | pd | laser
    x0: int  # canvas column of the left edge (template position)
    y0: int
    height: int
    width: int
    sprite: np.ndarray | None = None  # [h, w, 3] float32
    pads: list = dataclasses.field(default_factory=list)  # bond pads, canvas (x, y)


@dataclass
class _Wire:
    start_comp: int  # component index the wire starts on (always a die)
    end_comp: int  # component index of the far end, -1 = base/pin
    points: np.ndarray  # [4, 2] cubic Bezier control points, canvas (x, y), template


def _edge_coords(edge: str, scene_x, scene_y, size):
    """(along, depth) coordinates for pins on an image edge: depth = distance inwards."""
    last = size - 1
    if edge == "bottom":
        return scene_x, last - scene_y
    if edge == "top":
        return scene_x, scene_y
    if edge == "left":
        return scene_y, scene_x
    return scene_y, last - scene_x


def _edge_point(edge: str, along: float, depth: float, size: int):
    """Inverse of :func:`_edge_coords` for one point: scene (x, y)."""
    last = size - 1
    if edge == "bottom":
        return along, last - depth
    if edge == "top":
        return along, depth
    if edge == "left":
        return depth, along
    return last - depth, along


def _shade_box(height, width, rng, bevel):
    """Per-pixel shading of a box seen from above, lit from the top-left: [h, w]."""
    ys = np.arange(height, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float32)[None, :] + 0.5
    shade = 1.0 + 0.08 * (0.5 - ys / height) + 0.05 * (0.5 - xs / width)
    shade = np.broadcast_to(shade, (height, width)).copy()
    near_top_left = (ys < bevel) | (xs < bevel)
    near_bottom_right = (ys > height - bevel) | (xs > width - bevel)
    shade[np.broadcast_to(near_top_left, shade.shape)] += 0.18
    shade[np.broadcast_to(near_bottom_right, shade.shape)] -= 0.28
    outline = (ys < 1) | (xs < 1) | (ys > height - 1) | (xs > width - 1)
    shade[np.broadcast_to(outline, shade.shape)] *= 0.55
    return shade * (1 + 0.025 * rng.normal(size=(height, width)).astype(np.float32))


def _render_sprite(comp: _Component, rng, size: int) -> np.ndarray:
    """Colour image of one SMD component as seen from above: [h, w, 3] float32."""
    h, w = comp.height, comp.width
    bevel = max(1.0, 0.008 * size)
    shade = _shade_box(h, w, rng, bevel)[..., None]
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(w, dtype=np.float32)[None, :] + 0.5
    if comp.kind == "chip":
        body = np.array(
            [(0.66, 0.52, 0.36), (0.13, 0.13, 0.14), (0.35, 0.35, 0.37), (0.55, 0.42, 0.30)][
                rng.integers(4)
            ],
            np.float32,
        ) * rng.uniform(0.9, 1.1)
        sprite = np.broadcast_to(body, (h, w, 3)).copy()
        along, across, long_side = (xs, ys, w) if w >= h else (ys, xs, h)
        short_side = h if w >= h else w
        term = rng.uniform(0.2, 0.28) * long_side
        in_term = np.broadcast_to((along < term) | (along > long_side - term), (h, w))
        # metal terminals: cylinder-like highlight across the short side
        u = np.broadcast_to(2 * across / short_side - 1, (h, w))
        metal = SILVER * rng.uniform(0.9, 1.05)
        metal_shade = (
            0.6 + 0.35 * np.sqrt(np.clip(1 - u**2, 0, 1)) + 0.3 * np.exp(-(((u + 0.35) / 0.2) ** 2))
        )
        sprite[in_term] = metal[None, :] * metal_shade[in_term][:, None]
        return np.clip(sprite * shade, 0, 1).astype(np.float32)

    die_colours = [(0.36, 0.38, 0.47), (0.52, 0.53, 0.58), (0.24, 0.26, 0.33), (0.45, 0.40, 0.50)]
    body = np.array(die_colours[rng.integers(len(die_colours))], np.float32)
    sprite = np.broadcast_to(body, (h, w, 3)).copy()
    # an inner active area with a fine metal pattern
    inset = 0.2 * min(h, w)
    inner = _rect_alpha(xs[0], ys[:, 0], inset, inset, w - inset, h - inset)[..., None]
    period = max(2.0, 0.012 * size)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (xs if rng.random() < 0.5 else ys) / period)
    pattern = body * 1.15 + 0.05 * np.broadcast_to(stripes, (h, w))[..., None]
    sprite = sprite * (1 - inner) + pattern * inner
    if comp.kind == "pd":
        radius = 0.3 * min(h, w)
        dist = np.hypot(xs - w / 2, ys - h / 2)
        disc = np.clip(radius - dist + 0.5, 0, 1)[..., None]
        ring = np.clip(1.2 - np.abs(dist - radius - 1.0), 0, 1)[..., None]
        active = (
            np.array([0.22, 0.18, 0.42], np.float32) * (1 + 0.3 * (1 - dist / radius))[..., None]
        )
        sprite = sprite * (1 - disc) + active * disc
        sprite = sprite * (1 - ring) + GOLD * ring
    elif comp.kind == "laser":
        # the ridge waveguide: a bright stripe along the bar
        if w >= h:
            ridge = np.clip(1.0 - np.abs(ys - h / 2) / max(1.0, 0.06 * h), 0, 1)
        else:
            ridge = np.clip(1.0 - np.abs(xs - w / 2) / max(1.0, 0.06 * w), 0, 1)
        ridge = np.broadcast_to(ridge, (h, w))[..., None]
        sprite = sprite * (1 - ridge) + np.array([0.85, 0.82, 0.75], np.float32) * ridge
    sprite = sprite * shade
    pad_half = max(1.0, 0.011 * size)
    for pad_x, pad_y in comp.pads:
        # canvas pixel centres are integers; the sprite's local frame starts at its left edge
        local_x, local_y = pad_x - comp.x0 + 0.5, pad_y - comp.y0 + 0.5
        cover = _rect_alpha(
            xs[0],
            ys[:, 0],
            local_x - pad_half,
            local_y - pad_half,
            local_x + pad_half,
            local_y + pad_half,
        )[..., None]
        sprite = sprite * (1 - cover) + GOLD * 0.95 * cover
    return np.clip(sprite, 0, 1).astype(np.float32)


def _place_components(config, rng, edge, pin_depth, pad):
    """Non-overlapping component rectangles (canvas coordinates) away from the pin strip."""
    size = config.size
    count = int(rng.integers(config.components[0], config.components[1] + 1))
    kinds = ["die", "pd", "laser"]
    n_dies = min(count, 2 + int(rng.random() < 0.5))
    wanted = [kinds[rng.integers(3)] for _ in range(n_dies)] + ["chip"] * (count - n_dies)
    gap = 0.03 * size
    border = 0.06 * size
    placed: list[_Component] = []
    for kind in wanted:
        for _attempt in range(200):
            if kind == "chip":
                long_side, short_side = (
                    rng.uniform(0.09, 0.16) * size,
                    rng.uniform(0.05, 0.075) * size,
                )
            elif kind == "laser":
                long_side, short_side = (
                    rng.uniform(0.16, 0.22) * size,
                    rng.uniform(0.045, 0.06) * size,
                )
            else:
                long_side = rng.uniform(0.1, 0.17) * size
                short_side = long_side * rng.uniform(0.75, 1.0)
            width, height = (
                (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
            )
            width, height = max(4, int(round(width))), max(4, int(round(height)))
            x0 = rng.uniform(border, size - border - width)
            y0 = rng.uniform(border, size - border - height)
            corners = [
                _edge_coords(edge, x, y, size)
                for x, y in (
                    (x0, y0),
                    (x0 + width, y0),
                    (x0, y0 + height),
                    (x0 + width, y0 + height),
                )
            ]
            if min(depth for _, depth in corners) < pin_depth + gap:
                continue
            x0, y0 = int(round(x0)) + pad, int(round(y0)) + pad
            if any(
                x0 < other.x0 + other.width + gap
                and other.x0 < x0 + width + gap
                and y0 < other.y0 + other.height + gap
                and other.y0 < y0 + height + gap
                for other in placed
            ):
                continue
            placed.append(_Component(kind, x0, y0, height, width))
            break
    return placed


def _pad_towards(comp: _Component, target, inset):
    """Point on the die's inset rectangle on the ray from its centre to ``target``."""
    cx, cy = comp.x0 + comp.width / 2 - 0.5, comp.y0 + comp.height / 2 - 0.5
    dx, dy = target[0] - cx, target[1] - cy
    half_w, half_h = comp.width / 2 - inset, comp.height / 2 - inset
    t = 1.0 / max(abs(dx) / max(half_w, 1e-3), abs(dy) / max(half_h, 1e-3), 1e-6)
    return cx + dx * t, cy + dy * t


def _wire_points(rng, start, end):
    """Cubic Bezier control points of a bonding wire seen from above (a gentle arc)."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    direction = end - start
    normal = np.array([-direction[1], direction[0]])
    bend = rng.uniform(0.04, 0.14) * (1 if rng.random() < 0.5 else -1)
    p1 = start + 0.3 * direction + normal * bend * rng.uniform(0.7, 1.3)
    p2 = start + 0.7 * direction + normal * bend * rng.uniform(0.7, 1.3)
    return np.stack([start, p1, p2, end])


def _wire_layer(wire_points_list, config, hw):
    """Premultiplied colour and coverage of all wires: ([C, C, 3], [C, C])."""
    colour = np.zeros((*hw, 3), np.float32)
    cover = np.zeros(hw, np.float32)
    for points in wire_points_list:
        patch = _wire_alpha(points, config, hw, with_core=True)
        if patch is None:
            continue
        y0, x0, alpha = patch
        window = (slice(y0, y0 + alpha.shape[0]), slice(x0, x0 + alpha.shape[1]))
        # the body in gold, then a bright specular core along the wire's top
        for layer, tint, opacity in ((0, GOLD * 0.92, 1.0), (1, _WIRE_HIGHLIGHT, 0.8)):
            a = alpha[..., layer : layer + 1] * opacity
            colour[window] = tint * a + (1 - a) * colour[window]
            cover[window] = a[..., 0] + (1 - a[..., 0]) * cover[window]
    return colour, cover
