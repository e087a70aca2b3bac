"""The batch scene: one device layout with its static base and defect-free template, and the
compositing of a scene on the padded canvas (chapter 1, "The problem").

Every batch is one device type photographed once as a template; :func:`_batch_scene` builds it
from a random generator seeded by ``(seed, 1, batch)``.  The steps below draw from that one
generator in a fixed order, so changing the order changes every dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .config import SynthConfig
from .device import (
    BASE_STYLES,
    GOLD,
    SILVER,
    _edge_coords,
    _edge_point,
    _pad_towards,
    _place_components,
    _render_sprite,
    _Wire,
    _wire_layer,
    _wire_points,
)
from .raster import _grain_field, _rect_alpha, _smooth_field, _to_uint8


@dataclass
class _BatchScene:
    pad: int
    base_rgb: np.ndarray  # [C, C, 3] base without grain: plate, fixture, pins, metallisation
    grain_amp: np.ndarray  # [C, C] grain amplitude per pixel
    grain: np.ndarray  # [C, C] template grain, unit std
    fresh_grain: np.ndarray  # [C, C] an independent grain field for the samples
    base_area: np.ndarray  # [C, C] bool, the plate where base defects can occur
    components: list
    wires: list
    targets: list  # [(x, y, comp)] bond targets for an extra wire
    template_label: np.ndarray  # [C, C] int16, 0 = base, k + 1 = component k
    template: np.ndarray  # [S, S, 3] uint8


@dataclass
class _Canvas:
    """The padded canvas the layout steps draw on."""

    size: int
    pad: int
    hw: tuple[int, int]
    coords: np.ndarray  # [C] scene coordinate of each canvas index
    scene_x: np.ndarray  # [C, C]
    scene_y: np.ndarray  # [C, C]
    scale: float  # size / 256: the lengths in pixels below were tuned at 256 px


def _canvas_pad(config: SynthConfig) -> int:
    """Margin around the template so that every sample pixel's scene point is on the canvas;
    computed for max(variation, 1) so the template does not depend on smaller variations."""
    v = max(config.variation, 1.0)
    half = config.size / 2
    theta = math.radians(config.max_rotation_deg * v)
    spread = abs(math.cos(theta)) + abs(math.sin(min(abs(theta), math.pi / 2)))
    reach = (half + config.max_shift * config.size * v) * spread / (1 - config.max_scale_change * v)
    return int(math.ceil(reach - half)) + 4


def _rng(config: SynthConfig, *keys: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, *keys])


def _canvas(config: SynthConfig) -> _Canvas:
    size = config.size
    pad = _canvas_pad(config)
    side = size + 2 * pad
    coords = np.arange(side, dtype=np.float32) - pad
    scene_y, scene_x = np.meshgrid(coords, coords, indexing="ij")
    return _Canvas(size, pad, (side, side), coords, scene_x, scene_y, size / 256)


def _plate_colours(rng, canvas: _Canvas):
    """Plate colour with low-frequency shading and printed metallisation:
    (base_rgb, grain_amp, shading, brushed_axis)."""
    size, hw, coords = canvas.size, canvas.hw, canvas.coords
    style = BASE_STYLES[rng.integers(len(BASE_STYLES))]
    base_colour = np.clip(np.array(style[1], np.float32) * rng.uniform(0.9, 1.08, 3), 0, 1)
    brushed_axis = int(rng.integers(2)) if style[2] else None

    # low-frequency shading: a light gradient and mottling
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * canvas.scene_x + np.sin(angle) * canvas.scene_y) / size
    shading = 1 + 0.12 * gradient + 0.04 * _smooth_field(rng, hw, 6)
    shading += 0.02 * _smooth_field(rng, hw, 24)
    base_rgb = base_colour[None, None, :] * shading[..., None]
    grain_amp = np.full(hw, style[3], np.float32)

    # metallisation printed on the plate: traces and pads (static, part of the base)
    for _ in range(int(rng.integers(2, 5))):
        long_side, short_side = rng.uniform(0.15, 0.45) * size, rng.uniform(0.012, 0.03) * size
        width, height = (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
        x0, y0 = rng.uniform(-0.1, 1.0) * size, rng.uniform(-0.1, 1.0) * size
        cover = _rect_alpha(coords, coords, x0, y0, x0 + width, y0 + height)[..., None]
        base_rgb = (
            base_rgb * (1 - cover) + GOLD * rng.uniform(0.85, 1.0) * shading[..., None] * cover
        )
    return base_rgb, grain_amp, shading, brushed_axis


def _plate_edge_and_pins(config: SynthConfig, rng, canvas: _Canvas, base_rgb, grain_amp):
    """The plate ends near one image edge; pins cross that edge over a dark fixture.
    Returns (base_rgb, grain_amp, base_area, pin bond targets, edge, pin_depth)."""
    size, hw, scale = canvas.size, canvas.hw, canvas.scale
    edge = ("bottom", "top", "left", "right")[rng.integers(4)]
    along, depth = _edge_coords(edge, canvas.scene_x, canvas.scene_y, size)
    plate_edge = rng.uniform(0.07, 0.12) * size
    plate = np.clip(depth - plate_edge + 0.5, 0, 1)[..., None]
    fixture = (
        np.array([0.12, 0.12, 0.14], np.float32) * (1 + 0.15 * _smooth_field(rng, hw, 8))[..., None]
    )
    rim = np.exp(-(((depth - plate_edge - 1.0 * scale) / (1.2 * scale)) ** 2))[..., None]
    base_rgb = base_rgb * plate + fixture * (1 - plate) + 0.25 * rim
    grain_amp = np.where(plate[..., 0] > 0.5, grain_amp, 0.12)

    n_pins = int(rng.integers(config.pins[0], config.pins[1] + 1))
    pin_width = rng.uniform(0.028, 0.04) * size
    pin_depth = plate_edge + rng.uniform(0.05, 0.08) * size  # inner end of the pins
    spacing = min(0.85 * size / n_pins, 2.6 * pin_width + 0.05 * size)
    first = size / 2 - spacing * (n_pins - 1) / 2 + rng.uniform(-0.05, 0.05) * size
    pin_metal = GOLD if rng.random() < 0.6 else SILVER
    pin_mask = np.zeros(hw, np.float32)
    targets = []
    for k in range(n_pins):
        centre = first + k * spacing
        u = (along - centre) / (pin_width / 2)
        cover = np.clip(pin_width / 2 - np.abs(along - centre) + 0.5, 0, 1)
        cover = cover * np.clip(pin_depth - depth + 0.5, 0, 1)
        profile = (
            0.55
            + 0.4 * np.sqrt(np.clip(1 - u**2, 0, 1))
            + 0.35 * np.exp(-(((u + 0.3) / 0.25) ** 2))
        )
        base_rgb = (
            base_rgb * (1 - cover[..., None]) + pin_metal * profile[..., None] * cover[..., None]
        )
        pin_mask = np.maximum(pin_mask, cover)
        bond_x, bond_y = _edge_point(edge, centre, pin_depth - 0.6 * pin_width, size)
        targets.append((bond_x + canvas.pad, bond_y + canvas.pad, -1))
    grain_amp = np.where(pin_mask > 0.5, 0.03, grain_amp).astype(np.float32)
    base_area = (plate[..., 0] > 0.99) & (pin_mask < 0.01)
    return base_rgb, grain_amp, base_area, targets, edge, pin_depth


def _attach_pads(base_rgb, components, canvas: _Canvas, shading):
    """Die-attach and solder pads under the components (part of the static base)."""
    coords, pad = canvas.coords, canvas.pad
    attach_margin = 0.012 * canvas.size
    for comp in components:
        cover = _rect_alpha(
            coords + pad,
            coords + pad,
            comp.x0 - attach_margin - 0.5,
            comp.y0 - attach_margin - 0.5,
            comp.x0 + comp.width + attach_margin - 0.5,
            comp.y0 + comp.height + attach_margin - 0.5,
        )[..., None]
        pad_colour = GOLD if comp.kind != "chip" else SILVER * 0.9
        base_rgb = base_rgb * (1 - cover) + pad_colour * 0.9 * shading[..., None] * cover
    return base_rgb


def _lay_wires(config: SynthConfig, rng, components, targets, batch_index: int) -> list[_Wire]:
    """Bonding wires from each die to its nearest free targets (pins, chip terminals); adds
    the chip terminals to ``targets`` and the bond pads to the dies."""
    size = config.size
    for index, comp in enumerate(components):
        if comp.kind == "chip":
            for end in (0.15, 0.85):
                tx = comp.x0 + (comp.width * end if comp.width >= comp.height else comp.width / 2)
                ty = comp.y0 + (comp.height * end if comp.height > comp.width else comp.height / 2)
                targets.append((tx - 0.5, ty - 0.5, index))
    used = set()
    wires: list[_Wire] = []
    pad_inset = 0.022 * size
    for index, comp in enumerate(components):
        if comp.kind == "chip":
            continue
        centre = np.array([comp.x0 + comp.width / 2, comp.y0 + comp.height / 2])
        by_distance = sorted(
            (float(np.hypot(*(np.array(t[:2]) - centre))), k)
            for k, t in enumerate(targets)
            if k not in used and t[2] != index
        )
        to_pins = [
            k for dist, k in by_distance if 0.08 * size < dist < 0.7 * size and targets[k][2] < 0
        ]
        to_chips = [
            k for dist, k in by_distance if 0.08 * size < dist < 0.45 * size and targets[k][2] >= 0
        ]
        wanted = int(rng.integers(config.wires_per_die[0], config.wires_per_die[1] + 1))
        # most wires go to the nearest pins (signal out), the rest to nearby passives
        n_pins = min(len(to_pins), int(rng.integers(1, wanted + 1)))
        chosen = to_pins[:n_pins] + to_chips[: wanted - n_pins]
        chosen += [k for k in to_pins[n_pins:] if k not in chosen][: wanted - len(chosen)]
        for k in chosen:
            used.add(k)
            tx, ty, tcomp = targets[k]
            start = _pad_towards(comp, (tx, ty), pad_inset)
            comp.pads.append(start)
            wires.append(_Wire(index, tcomp, _wire_points(rng, start, (tx, ty))))
    if not wires:
        raise RuntimeError(f"batch {batch_index}: no bonding wire could be laid out")
    return wires


def _template_image(scene: _BatchScene, config: SynthConfig, batch_index: int) -> np.ndarray:
    """The scene with every component in place, cropped, with sensor noise: uint8 [S, S, 3]."""
    hw, pad, size = scene.grain.shape, scene.pad, config.size
    offsets = np.zeros((len(scene.components), 2), np.int64)
    template_scene, _ = _compose(
        scene, scene.grain, offsets, _wire_layer([w.points for w in scene.wires], config, hw)
    )
    crop = template_scene[pad : pad + size, pad : pad + size]
    noise_rng = _rng(config, 3, batch_index)
    noise = noise_rng.standard_normal(crop.shape, dtype=np.float32)
    return _to_uint8(crop + config.noise_std * noise)


@lru_cache(maxsize=4)
def _batch_scene(config: SynthConfig, batch_index: int) -> _BatchScene:
    """Layout, static base layers and template of one batch (one device type)."""
    rng = _rng(config, 1, batch_index)
    canvas = _canvas(config)
    base_rgb, grain_amp, shading, brushed_axis = _plate_colours(rng, canvas)
    base_rgb, grain_amp, base_area, targets, edge, pin_depth = _plate_edge_and_pins(
        config, rng, canvas, base_rgb, grain_amp
    )
    components = _place_components(config, rng, edge, pin_depth, canvas.pad)
    base_rgb = _attach_pads(base_rgb, components, canvas, shading)
    wires = _lay_wires(config, rng, components, targets, batch_index)
    for comp in components:
        comp.sprite = _render_sprite(comp, rng, config.size)

    grain = _grain_field(rng, canvas.hw, brushed_axis, canvas.scale)
    fresh_grain = _grain_field(rng, canvas.hw, brushed_axis, canvas.scale)
    template_label = np.zeros(canvas.hw, np.int16)
    for index, comp in enumerate(components):
        template_label[comp.y0 : comp.y0 + comp.height, comp.x0 : comp.x0 + comp.width] = index + 1

    scene = _BatchScene(
        canvas.pad,
        np.clip(base_rgb, 0, 1).astype(np.float32),
        grain_amp,
        grain,
        fresh_grain,
        base_area,
        components,
        wires,
        targets,
        template_label,
        np.zeros((config.size, config.size, 3), np.uint8),
    )
    scene.template = _template_image(scene, config, batch_index)
    return scene


def _compose(scene: _BatchScene, grain, offsets, wire_layer, before_wires=None):
    """Render a scene on the canvas: base with grain, components moved by ``offsets``
    ([K, 2] integer (dx, dy)), optional ``before_wires(rgb, label, base_rgb)`` hook for
    defects, then the wires (``wire_layer`` from :func:`_wire_layer`).
    Returns (rgb [C, C, 3], label [C, C])."""
    hw = scene.grain.shape
    base_rgb = scene.base_rgb * (1 + scene.grain_amp * grain)[..., None]
    rgb = base_rgb.copy()
    label = np.zeros(hw, np.int16)
    for index, comp in enumerate(scene.components):
        x0, y0 = comp.x0 + int(offsets[index, 0]), comp.y0 + int(offsets[index, 1])
        ya, xa = max(y0, 0), max(x0, 0)
        yb, xb = min(y0 + comp.height, hw[0]), min(x0 + comp.width, hw[1])
        if yb <= ya or xb <= xa:
            continue
        rgb[ya:yb, xa:xb] = comp.sprite[ya - y0 : yb - y0, xa - x0 : xb - x0]
        label[ya:yb, xa:xb] = index + 1
    if before_wires is not None:
        rgb = before_wires(rgb, label, base_rgb)
    wire_rgb, wire_cover = wire_layer
    rgb = wire_rgb + (1 - wire_cover[..., None]) * rgb
    # the camera saturates: clip before any resampling, as the uint8 template is clipped
    return np.clip(rgb, 0, 1), label


def render_template(config: SynthConfig, batch_index: int) -> np.ndarray:
    """The defect-free template of one batch, uint8 [S, S, 3] (chapter 1, "The problem")."""
    if not 0 <= batch_index < config.batches:
        raise ValueError(f"batch_index {batch_index} outside 0..{config.batches - 1}")
    return _batch_scene(config, batch_index).template.copy()
