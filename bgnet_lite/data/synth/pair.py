"""One template/sample pair: the sample's spatial and texture variation, its defect with an
exact mask, and the ground-truth flow (chapter 1, "The problem").

A pair draws from one random generator seeded by ``(seed, 2, batch, pair)`` in a fixed order:
spatial variation, grain, defect placement (retried until visible), the defect's hook,
texture variation, sensor noise.
"""

from __future__ import annotations

import math

import numpy as np

from .config import SynthConfig, SynthPair, defect_schedule
from .defects import _make_defect
from .device import _wire_layer
from .geometry import _Bilinear, _correspondence, _inverse_similarity
from .raster import _to_uint8
from .scene import _batch_scene, _compose, _rng

_PLACEMENT_ATTEMPTS = 60


def generate_pair(config: SynthConfig, batch_index: int, pair_index: int) -> SynthPair:
    """Render pair ``pair_index`` (global index; its defect type comes from
    :func:`defect_schedule`) on the layout of batch ``batch_index``.  Deterministic in
    ``(config.seed, batch_index, pair_index)`` (chapter 1, "The problem")."""
    if not 0 <= batch_index < config.batches:
        raise ValueError(f"batch_index {batch_index} outside 0..{config.batches - 1}")
    if not 0 <= pair_index < config.pairs:
        raise ValueError(f"pair_index {pair_index} outside 0..{config.pairs - 1}")
    scene = _batch_scene(config, batch_index)
    defect = defect_schedule(config)[pair_index][1]
    rng = _rng(config, 2, batch_index, pair_index)
    size = config.size

    params, offsets, wires = _spatial_variation(config, scene, rng)
    grain = _sample_grain(config, scene, rng)
    ys, xs = np.meshgrid(
        np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij"
    )
    px, py = _inverse_similarity(params, size, xs, ys)
    warp = _Bilinear(px, py, scene.pad, scene.grain.shape[0])
    hook, mask, wire_layer = _place_defect(
        defect, rng, scene, config, params, offsets, wires, warp, pair_index
    )
    rgb, label = _compose(scene, grain, offsets, wire_layer, hook)
    sample = _texture_variation(config, rng, warp(rgb))

    flow = _correspondence(scene, params, offsets, label, size, xs, ys)
    stride = config.flow_stride
    grid = (np.arange(size // stride, dtype=np.float64) + 0.5) * stride - 0.5
    coarse_y, coarse_x = np.meshgrid(grid, grid, indexing="ij")
    coarse_flow = _correspondence(scene, params, offsets, label, size, coarse_x, coarse_y)
    params.setdefault("wire_defect", "")
    return SynthPair(
        template=scene.template.copy(),
        sample=_to_uint8(sample),
        mask=np.where(mask, 255, 0).astype(np.uint8),
        flow=flow,
        defect=defect,
        batch=batch_index,
        params=params,
        coarse_flow=coarse_flow,
    )


def _spatial_variation(config: SynthConfig, scene, rng):
    """Background spatial variation: the global similarity ``params``, whole-pixel component
    ``offsets`` [K, 2] (dx, dy) and the wires' control points moved with their ends and
    jittered."""
    size, v = config.size, config.variation
    params = {
        "shift_x": float(rng.uniform(-1, 1) * config.max_shift * size * v),
        "shift_y": float(rng.uniform(-1, 1) * config.max_shift * size * v),
        "angle_deg": float(rng.uniform(-1, 1) * config.max_rotation_deg * v),
        "scale": float(1 + rng.uniform(-1, 1) * config.max_scale_change * v),
    }
    offsets = np.rint(
        rng.uniform(-1, 1, (len(scene.components), 2)) * config.component_shift * size * v
    ).astype(np.int64)  # [K, 2] (dx, dy)
    wires = []
    for wire in scene.wires:
        points = wire.points.copy()
        start_shift = offsets[wire.start_comp]
        end_shift = offsets[wire.end_comp] if wire.end_comp >= 0 else np.zeros(2)
        for k, weight in enumerate((0.0, 1 / 3, 2 / 3, 1.0)):
            points[k] += (1 - weight) * start_shift + weight * end_shift
        points[1:3] += rng.uniform(-1, 1, (2, 2)) * config.wire_jitter * size * v
        wires.append(points)
    return params, offsets, wires


def _sample_grain(config: SynthConfig, scene, rng):
    """Texture: part of the grain is re-drawn (another device of the same type)."""
    mix = min(1.0, config.grain_change * config.texture_variation)
    roll = tuple(int(r) for r in rng.integers(0, scene.grain.shape[0], 2))
    if not mix:
        return scene.grain
    return math.sqrt(1 - mix**2) * scene.grain + mix * np.roll(
        scene.fresh_grain, roll, axis=(0, 1)
    )


def _moved_label(scene, offsets):
    """A function giving the sample scene's component map (computed once, on first call)."""
    cache = {}

    def canvas_label():
        if "label" not in cache:
            label = np.zeros(scene.grain.shape, np.int16)
            for index, comp in enumerate(scene.components):
                x0, y0 = comp.x0 + offsets[index, 0], comp.y0 + offsets[index, 1]
                label[max(y0, 0) : y0 + comp.height, max(x0, 0) : x0 + comp.width] = index + 1
            cache["label"] = label
        return cache["label"]

    return canvas_label


def _place_defect(defect, rng, scene, config, params, offsets, wires, warp, pair_index):
    """Try defect placements until one is big enough and not mostly hidden under wires:
    (hook, mask [S, S] bool, wire layer)."""
    size, hw = config.size, scene.grain.shape
    canvas_label = _moved_label(scene, offsets)
    min_pixels = max(4, round(0.0004 * size * size))
    fixed_wires = None if defect == "wire_count" else _wire_layer(wires, config, hw)
    for _attempt in range(_PLACEMENT_ATTEMPTS):
        choice = _make_defect(defect, rng, scene, config, params, offsets, canvas_label, wires)
        if choice is None:
            continue
        hook, pair_wires, alpha_fn = choice
        coverage = alpha_fn(canvas_label())
        mask = warp(coverage) >= 0.5
        wire_layer = fixed_wires or _wire_layer(pair_wires, config, hw)
        # wires may cross a defect but not mostly hide it (an extra wire is itself on top)
        if params.get("wire_defect") == "extra":
            hidden_ok = True
        else:
            unhidden = warp(coverage * (1 - wire_layer[1])) >= 0.5
            hidden_ok = unhidden.sum() >= 0.6 * mask.sum()
        if mask.sum() >= min_pixels and hidden_ok:
            return hook, mask, wire_layer
        params.pop("wire_defect", None)
    raise RuntimeError(f"pair {pair_index}: could not place a visible {defect} defect")


def _texture_variation(config: SynthConfig, rng, sample):
    """Colour, contrast, brightness and illumination change in the sample frame, then sensor
    noise."""
    size, t = config.size, config.texture_variation
    gain = 1 + rng.uniform(-1, 1, 3) * config.color_gain * t
    contrast = 1 + rng.uniform(-1, 1) * config.contrast * t
    brightness = rng.uniform(-1, 1) * config.brightness * t
    tilt = rng.uniform(-1, 1, 2) * config.illumination * t
    mean = float(sample.mean())
    # ((sample - mean) * contrast + mean) * gain + brightness as one per-channel affine map
    scale = (contrast * gain).astype(np.float32)
    offset = ((1 - contrast) * mean * gain + brightness).astype(np.float32)
    ramp = np.linspace(-0.5, 0.5, size, endpoint=False, dtype=np.float32)
    light = (
        1 + tilt[0].astype(np.float32) * ramp[None, :] + tilt[1].astype(np.float32) * ramp[:, None]
    )
    sample = (sample * scale + offset) * light[..., None]
    return sample + config.noise_std * rng.standard_normal(sample.shape, dtype=np.float32)
