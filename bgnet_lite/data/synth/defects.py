"""The five defect types, drawn on the sample's scene canvas (chapter 1, "The problem").

Each maker returns a *hook* ``hook(rgb, label, base_rgb) -> rgb`` that paints the defect before
the wires are drawn, and the defect's coverage on the canvas; :func:`_make_defect` turns the
coverage into ``alpha_fn(label)``, the part not hidden under components.  All of them draw from
the pair's random generator, some of them (the crush's roughness) only when the hook runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from .device import _pad_towards, _wire_points
from .geometry import _inverse_similarity
from .raster import _MIN_STROKE, _blob, _full, _luminance, _polygon, _stroke, _wire_alpha

_STAIN_COLOURS = [(0.30, 0.20, 0.10), (0.92, 0.90, 0.80), (0.75, 0.62, 0.25), (0.08, 0.08, 0.06)]


def _contrasting(rng, reference, candidates):
    """Of three random ``candidates``, the colour whose luminance differs most from
    ``reference`` (so that a stain stays visible)."""
    picks = [candidates[rng.integers(len(candidates))] for _ in range(3)]
    return np.array(
        max(picks, key=lambda c: abs(_luminance(c) - _luminance(reference))), np.float32
    )


def _make_defect(kind, rng, scene, config, params, offsets, canvas_label_fn, wires):
    """Choose one defect: returns (hook(rgb, label, base_rgb) or None, wires, alpha_fn), or
    None to try another placement.

    ``alpha_fn(label)`` gives the defect's coverage on the canvas, clipped to the part not
    hidden under components (``label`` is the sample scene's component map).  Wires drawn
    over a defect do not cut its mask: an annotator paints a stain or a chip as one region."""
    size = config.size
    pad = scene.pad
    hw = scene.grain.shape
    xs, ys = rng.uniform(0.12, 0.88, 2) * size
    px, py = _inverse_similarity(params, size, np.array(xs), np.array(ys))
    centre = np.array([float(px) + pad, float(py) + pad])

    if kind in ("base_crush", "base_scratch"):
        label = canvas_label_fn()
        cx, cy = np.clip(np.rint(centre).astype(int), 0, hw[0] - 1)
        if label[cy, cx] != 0 or not scene.base_area[cy, cx]:
            return None
        make = _crush if kind == "base_crush" else _scratch
        hook, alpha = make(rng, scene, config, centre)

        def alpha_fn(label):
            return alpha * (label == 0) * scene.base_area

        return hook, wires, alpha_fn

    if kind in ("contamination", "breakage"):
        index = int(rng.integers(len(scene.components)))
        comp = scene.components[index]
        origin = (comp.x0 + offsets[index, 0], comp.y0 + offsets[index, 1])
        make = _stain if kind == "contamination" else _breakage
        hook, alpha = make(rng, scene, config, index, origin)

        def alpha_fn(label):
            return alpha * (label == index + 1)

        return hook, wires, alpha_fn

    return _wire_defect(rng, scene, config, params, offsets, wires)


def _crush(rng, scene, config, centre):
    """A dark dented blob on the plate, lit from one side: (hook, coverage)."""
    size, hw = config.size, scene.grain.shape
    radius = rng.uniform(*config.crush_radius) * size
    alpha = _full(_polygon(_blob(rng, centre, radius, roughness=0.35), hw), hw)
    darkness = rng.uniform(0.35, 0.6)
    light = rng.uniform(0, 2 * np.pi)

    def hook(rgb, label, base_rgb):
        visible = alpha * (label == 0) * scene.base_area
        relief = ndimage.gaussian_filter(alpha, radius / 4)
        gy, gx = np.gradient(relief)
        lit = -(np.cos(light) * gx + np.sin(light) * gy) * radius * 0.6
        change = 1 - darkness * visible + lit * visible
        rough = 1 + 0.12 * rng.normal(size=hw).astype(np.float32) * visible
        return rgb * np.clip(change * rough, 0, None)[..., None]

    return hook, alpha


def _scratch(rng, scene, config, centre):
    """A thin wobbly line on the plate, light on dark plates and dark on light ones."""
    size, hw = config.size, scene.grain.shape
    length = rng.uniform(*config.scratch_length) * size
    direction = rng.uniform(0, np.pi)
    steps = np.linspace(-0.5, 0.5, 5)[:, None]
    axis = np.array([np.cos(direction), np.sin(direction)])
    normal = np.array([-axis[1], axis[0]])
    wobble = rng.normal(scale=0.04 * length, size=(5, 1)) * normal
    path = centre + steps * length * axis + wobble
    width = max(_MIN_STROKE, config.scratch_width * size * rng.uniform(0.8, 1.3))
    alpha = _full(_stroke(path, width, hw), hw)
    base_colour = scene.base_rgb[int(centre[1]), int(centre[0])]
    colour = np.array(
        [0.97, 0.96, 0.93] if _luminance(base_colour) < 0.55 else [0.18, 0.16, 0.15],
        np.float32,
    )
    strength = rng.uniform(0.6, 0.9)

    def hook(rgb, label, base_rgb):
        visible = (alpha * (label == 0) * scene.base_area)[..., None] * strength
        return rgb * (1 - visible) + colour * visible

    return hook, alpha


def _stain(rng, scene, config, index, origin):
    """A textured stain on component ``index`` (top-left corner ``origin`` in the sample)."""
    comp, hw = scene.components[index], scene.grain.shape
    x0, y0 = origin
    radius = rng.uniform(*config.stain_radius) * min(comp.width, comp.height)
    spot = (
        np.array(
            [
                x0 + rng.uniform(0.2, 0.8) * comp.width,
                y0 + rng.uniform(0.2, 0.8) * comp.height,
            ]
        )
        - 0.5
    )
    alpha = _full(_polygon(_blob(rng, spot, radius, roughness=0.45), hw), hw)
    colour = _contrasting(rng, comp.sprite, _STAIN_COLOURS)
    opacity = rng.uniform(0.7, 0.95)
    texture = 1 + 0.1 * scene.fresh_grain

    def hook(rgb, label, base_rgb):
        visible = (alpha * (label == index + 1))[..., None] * opacity
        return rgb * (1 - visible) + np.clip(colour * texture[..., None], 0, 1) * visible

    return hook, alpha


def _breakage(rng, scene, config, index, origin):
    """A chipped-off corner of component ``index``: (hook, coverage of the hole and its rim)."""
    comp, hw, size = scene.components[index], scene.grain.shape, config.size
    x0, y0 = origin
    chip_size = rng.uniform(*config.breakage_size) * min(comp.width, comp.height)
    corner_x = x0 - 0.5 + (comp.width if rng.random() < 0.5 else 0)
    corner_y = y0 - 0.5 + (comp.height if rng.random() < 0.5 else 0)
    sign_x = -1 if corner_x > x0 else 1
    sign_y = -1 if corner_y > y0 else 1
    a, b = chip_size * rng.uniform(0.7, 1.3), chip_size * rng.uniform(0.7, 1.3)
    # a chipped-off corner: a jagged fracture line from one edge to the other, closed
    # by points outside the component.  The line's ends lie exactly on the edges (no
    # sub-pixel slivers along an edge that would change pixels outside the mask).
    jags = np.concatenate([[0.0], rng.uniform(-0.12, 0.12, 4) * chip_size, [0.0]])
    rim_scale = 1 + max(1.5, 0.008 * size) / chip_size

    def corner_piece(grow):
        fracture = [
            (
                corner_x + sign_x * (a * grow * (1 - t) + jag),
                corner_y + sign_y * (b * grow * t + jag),
            )
            for t, jag in zip(np.linspace(0, 1, 6), jags, strict=True)
        ]
        outer = [
            (corner_x + sign_x * a * grow, corner_y - sign_y * 3),
            (corner_x - sign_x * 3, corner_y - sign_y * 3),
            (corner_x - sign_x * 3, corner_y + sign_y * b * grow),
        ]
        return _full(_polygon(np.array(outer + fracture[::-1]), hw), hw)

    hole = corner_piece(1.0)
    damaged = corner_piece(rim_scale)  # the hole plus a light fracture rim
    # broken material stands out from what was there: where the component was bright
    # (metal terminal, light ceramic) the hole is shadowed base and the fracture dark;
    # where it was dark (resistor body, die) both show the light inner ceramic
    light = np.array([0.86, 0.83, 0.76], np.float32) * rng.uniform(0.9, 1.05)
    dark = np.array([0.16, 0.15, 0.15], np.float32) * rng.uniform(0.8, 1.2)

    # only the component's own window can change
    window = (
        slice(max(y0, 0), max(y0 + comp.height, 0)),
        slice(max(x0, 0), max(x0 + comp.width, 0)),
    )

    def hook(rgb, label, base_rgb):
        part = rgb[window]
        on_comp = label[window] == index + 1
        luminance = part @ np.array([0.299, 0.587, 0.114], np.float32)
        bright = (luminance > 0.45)[..., None]
        rim = (np.clip(damaged[window] - hole[window], 0, 1) * on_comp)[..., None]
        gone = (hole[window] * on_comp)[..., None]
        rim_colour = np.where(bright, dark, light)
        inside = np.where(bright, base_rgb[window] * 0.4, light * 0.85)
        part = part * (1 - rim) + rim_colour * rim
        rgb[window] = part * (1 - gone) + inside * gone
        return rgb

    return hook, damaged


def _wire_defect(rng, scene, config, params, offsets, wires):
    """wire_count: a missing wire (mask = where it should be) or an extra one (mask = it);
    sets ``params["wire_defect"]``.  Same return as :func:`_make_defect`."""
    size, hw = config.size, scene.grain.shape
    if rng.random() < 0.5 and len(wires) > 1:
        missing = int(rng.integers(len(wires)))
        alpha = _full(_wire_alpha(wires[missing], config, hw), hw)
        params["wire_defect"] = "missing"
        return None, [w for k, w in enumerate(wires) if k != missing], lambda label: alpha
    dies = [k for k, c in enumerate(scene.components) if c.kind != "chip"]
    index = dies[int(rng.integers(len(dies)))]
    comp = scene.components[index]
    tx, ty, tcomp = scene.targets[int(rng.integers(len(scene.targets)))]
    if tcomp == index:
        return None
    end = np.array([tx, ty]) + (offsets[tcomp] if tcomp >= 0 else 0)
    shifted = dataclasses.replace(
        comp, x0=comp.x0 + int(offsets[index, 0]), y0=comp.y0 + int(offsets[index, 1])
    )
    start = _pad_towards(shifted, end, 0.022 * size)
    if np.hypot(*(end - np.array(start))) < 0.06 * size:
        return None
    extra = _wire_points(rng, start, end)
    alpha = _full(_wire_alpha(extra, config, hw), hw)
    params["wire_defect"] = "extra"
    return None, wires + [extra], lambda label: alpha
