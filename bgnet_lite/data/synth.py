"""Synthetic OCD-like template/sample pairs with exact masks and correspondences
(chapter 1, "The problem").

The paper's OCDs dataset (optical communication devices: a base, pins, SMD components and
thin gold bonding "jump" wires) is private, so we render a substitute.  Every *batch* is one
device layout with ONE defect-free template; every *sample* of the batch is another device of
the same type photographed again:

* **background spatial variation** -- a global similarity (shift, rotation, scale about the
  image centre), a small displacement of every component, bonding wires with jittered control
  points.  One knob, ``SynthConfig.variation``, scales all of it (0 = perfectly aligned);
* **texture variation** -- colour/brightness/contrast change, an illumination gradient and a
  partly re-drawn surface grain (all scaled by ``SynthConfig.texture_variation``) plus sensor
  noise (``noise_std``, on template and sample);
* exactly **one defect** with an exact pixel mask in the sample frame (one of
  :data:`DEFECT_TYPES`): ``base_crush`` (dark dented blob on the plate), ``base_scratch``
  (thin line on the plate), ``contamination`` (stain on a component), ``breakage`` (a
  chipped-off corner: the mask is the missing piece and its fracture rim) and ``wire_count``
  (``params["wire_defect"]`` says "extra": mask = the extra wire, or "missing": mask = where
  the wire would be in the sample frame).  A mask pixel is one whose defect coverage, after
  the warp, is >= 0.5 and not hidden under a component; wires drawn over a defect do not cut
  its mask (an annotator paints a stain or a chip as one region).

How a sample is made (scene coordinates = template pixel coordinates): the sample *scene* is
rendered on a padded canvas with displaced components and jittered wires, then the global
similarity is applied by inverse mapping (sample pixel -> scene point -> bilinear sample).  So
the ground-truth correspondence is exact: a sample pixel ``q`` sees scene point
``p = c + R(-angle) (q - c - shift) / scale`` (``c`` the image centre) and the template shows
the same background point at ``p - d`` where ``d`` is the displacement of the component under
``p`` (0 on the base).

Flow conventions (io.py's ``flow`` column, written with stride 4):

* NaN where the template does not show that background point: outside the template image
  after the warp, and where it is hidden in the template (base uncovered by a displaced
  component; a component point covered by another component in the template);
* on wires the flow is that of the base/component under the wire (wires are thin and move
  independently: they are treated as "texture", not as background geometry);
* on the defect the flow is that of the defect-free sample (e.g. a chipped-off piece of a
  component maps to where that piece is in the template).

Angles: ``angle_deg > 0`` turns the template content clockwise on screen (y points down).

Deliberate choices (the paper has no such generator; its OCDs data is real):

* ``max_shift`` defaults to 0.09 * size, not 0.08: the median misalignment must stay above
  size / 16 (one 1/8 feature cell at 128 px); 0.08 gives 0.065 * size, too close;
* component displacements are rounded to whole pixels, so that a moved component is the
  same pixels as in the template and the flow on it is exact;
* the defect-type proportions follow the paper's OCDs counts (Sec. 4.1.3).
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from bgnet_lite.data.io import DatasetWriter

DEFECT_TYPES: tuple[str, ...] = (
    "base_crush",
    "base_scratch",
    "contamination",
    "breakage",
    "wire_count",
)
# Paper Sec. 4.1.3 ("Datasets description"): the OCDs dataset has 918 pairs: 60 base
# crushing, 27 base scratches, 375 component contamination, 240 component breakage and
# 216 varying numbers of jump wires.
PAPER_DEFECT_COUNTS: dict[str, int] = {
    "base_crush": 60,
    "base_scratch": 27,
    "contamination": 375,
    "breakage": 240,
    "wire_count": 216,
}

_SUPERSAMPLE = 4  # anti-aliasing factor for drawn shapes (wires, blobs, scratches)
_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes the synthetic OCD-like dataset (chapter 1, "The problem").

    Lengths are fractions of ``size``; ``variation`` multiplies every spatial magnitude and
    ``texture_variation`` every photometric one (``noise_std`` is separate).
    """

    pairs: int = 918
    size: int = 256
    seed: int = 0
    variation: float = 1.0
    batches: int = 24
    # background spatial variation (scaled by `variation`)
    # per axis, uniform in [-max_shift, max_shift] * size; 0.09 (not 0.08) keeps the median
    # misalignment safely above size / 16 (0.08 gives 0.065 * size, too close)
    max_shift: float = 0.09
    max_rotation_deg: float = 6.0  # uniform in [-max, max]
    max_scale_change: float = 0.06  # scale uniform in [1 - x, 1 + x]
    component_shift: float = 0.04  # per component and axis, * size
    wire_jitter: float = 0.03  # per Bezier control point and axis, * size
    # texture variation (scaled by `texture_variation`)
    texture_variation: float = 1.0
    brightness: float = 0.06  # additive, fraction of the 0..255 range
    contrast: float = 0.12  # multiplicative about the image mean
    color_gain: float = 0.06  # per-channel multiplicative
    illumination: float = 0.12  # linear illumination gradient across the image
    grain_change: float = 0.5  # fraction of the surface grain re-drawn per sample
    noise_std: float = 0.012  # sensor noise (template and sample), fraction of 255
    # device layout
    components: tuple[int, int] = (6, 10)  # SMD components per batch (inclusive range)
    wires_per_die: tuple[int, int] = (2, 4)
    pins: tuple[int, int] = (4, 7)
    wire_width: float = 0.011
    # defect magnitudes
    crush_radius: tuple[float, float] = (0.025, 0.055)
    scratch_length: tuple[float, float] = (0.12, 0.3)
    scratch_width: float = 0.006
    stain_radius: tuple[float, float] = (0.25, 0.5)  # fraction of the component's short side
    breakage_size: tuple[float, float] = (0.35, 0.7)  # fraction of the component's short side
    # splits: by batch (`split`) and within batches (`split_inbatch`)
    val_fraction: float = 1 / 6
    test_fraction: float = 1 / 6
    flow_stride: int = 4

    def __post_init__(self):
        if self.size < 32 or self.size % 8:
            raise ValueError(f"size must be a multiple of 8 and >= 32, got {self.size}")
        if self.size % self.flow_stride:
            raise ValueError(f"flow_stride {self.flow_stride} must divide size {self.size}")
        if self.batches < 3:
            raise ValueError(f"batches must be >= 3 (train/val/test by batch), got {self.batches}")
        if self.pairs < self.batches:
            raise ValueError(
                f"pairs ({self.pairs}) must be >= batches ({self.batches}): every batch needs "
                "at least one sample"
            )
        if not 0 <= self.variation <= 4:
            raise ValueError(f"variation must be in [0, 4], got {self.variation}")
        if self.max_scale_change * max(self.variation, 1.0) >= 0.5:
            raise ValueError("max_scale_change * variation must stay below 0.5")
        if self.texture_variation < 0 or self.noise_std < 0:
            raise ValueError("texture_variation and noise_std must be >= 0")
        if not 0 < self.val_fraction + self.test_fraction < 1:
            raise ValueError("val_fraction + test_fraction must be in (0, 1)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SynthPair:
    """One rendered pair (chapter 1, "The problem").

    ``flow`` is full resolution ([2, H, W], the io.py convention with s = 1); ``coarse_flow``
    is the same field sampled on the stride-``flow_stride`` grid that goes to disk.
    """

    template: np.ndarray  # [H, W, 3] uint8
    sample: np.ndarray  # [H, W, 3] uint8
    mask: np.ndarray  # [H, W] uint8, 0/255
    flow: np.ndarray  # [2, H, W] float32, (x, y) template coordinates, NaN = not visible
    defect: str
    batch: int
    params: dict  # shift_x, shift_y (pixels), angle_deg, scale, wire_defect
    coarse_flow: np.ndarray  # [2, H/s, W/s] float32


# ----------------------------------------------------------------------------- schedules


def defect_counts(pairs: int) -> dict[str, int]:
    """Pairs per defect type: the paper's OCDs proportions scaled to ``pairs`` by largest
    remainder, every type >= 1 when ``pairs >= 5`` (chapter 1, "The problem")."""
    if pairs < 0:
        raise ValueError(f"pairs must be >= 0, got {pairs}")
    total = sum(PAPER_DEFECT_COUNTS.values())
    quotas = [pairs * PAPER_DEFECT_COUNTS[name] / total for name in DEFECT_TYPES]
    counts = [math.floor(quota) for quota in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda k: (-(quotas[k] - counts[k]), k))
    for k in by_remainder[: pairs - sum(counts)]:
        counts[k] += 1
    if pairs >= len(DEFECT_TYPES):
        for k in range(len(counts)):
            if counts[k] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[k] = 1
    return dict(zip(DEFECT_TYPES, counts, strict=True))


@lru_cache(maxsize=8)
def defect_schedule(config: SynthConfig) -> tuple[tuple[int, str], ...]:
    """``(batch, defect type)`` of every pair: batches are contiguous blocks of pairs, the
    defect types are shuffled over all pairs (chapter 1, "The problem")."""
    counts = defect_counts(config.pairs)
    types = [name for name in DEFECT_TYPES for _ in range(counts[name])]
    order = np.random.default_rng([config.seed, 6]).permutation(config.pairs)
    return tuple(
        (pair * config.batches // config.pairs, types[order[pair]]) for pair in range(config.pairs)
    )


def _split_sizes(count: int, config: SynthConfig) -> list[int]:
    """Largest-remainder (train, val, test) sizes with at least one train item."""
    fractions = [
        1 - config.val_fraction - config.test_fraction,
        config.val_fraction,
        config.test_fraction,
    ]
    quotas = [count * f for f in fractions]
    sizes = [math.floor(q) for q in quotas]
    for k in sorted(range(3), key=lambda k: (-(quotas[k] - sizes[k]), k))[: count - sum(sizes)]:
        sizes[k] += 1
    if sizes[0] == 0 and count > 0:
        sizes[int(np.argmax(sizes))] -= 1
        sizes[0] = 1
    return sizes


def batch_splits(config: SynthConfig) -> dict[int, str]:
    """``batch -> split`` for the background-generalisation split: val/test batches are never
    seen in training (chapter 1, "The problem").  Every split gets at least one batch."""
    n_train, n_val, n_test = _split_sizes(config.batches, config)
    if n_val == 0:
        n_val, n_train = 1, n_train - 1
    if n_test == 0:
        n_test, n_train = 1, n_train - 1
    order = np.random.default_rng([config.seed, 4]).permutation(config.batches)
    split = {}
    for rank, batch in enumerate(order.tolist()):
        split[batch] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return split


def inbatch_splits(config: SynthConfig) -> list[str]:
    """Split of every pair when samples of all batches are mixed (the easy comparison):
    each batch's samples are shuffled and split, every batch has train samples
    (chapter 1, "The problem")."""
    schedule = defect_schedule(config)
    result = [""] * config.pairs
    for batch in range(config.batches):
        members = [i for i, (b, _) in enumerate(schedule) if b == batch]
        order = np.random.default_rng([config.seed, 5, batch]).permutation(len(members))
        sizes = _split_sizes(len(members), config)
        labels = [name for name, n in zip(_SPLITS, sizes, strict=True) for _ in range(n)]
        for rank, member in enumerate(order.tolist()):
            result[members[member]] = labels[rank]
    return result


# ----------------------------------------------------------------------------- scene layout


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


def _luminance(rgb) -> float:
    rgb = np.asarray(rgb, dtype=np.float32)
    return float(
        0.299 * rgb[..., 0].mean() + 0.587 * rgb[..., 1].mean() + 0.114 * rgb[..., 2].mean()
    )


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


@lru_cache(maxsize=4)
def _batch_scene(config: SynthConfig, batch_index: int) -> _BatchScene:
    """Layout, static base layers and template of one batch (one device type)."""
    rng = _rng(config, 1, batch_index)
    size = config.size
    pad = _canvas_pad(config)
    canvas = size + 2 * pad
    hw = (canvas, canvas)
    coords = np.arange(canvas, dtype=np.float32) - pad  # scene coordinate of each canvas index
    scene_y, scene_x = np.meshgrid(coords, coords, indexing="ij")
    scale = size / 256

    style = BASE_STYLES[rng.integers(len(BASE_STYLES))]
    base_colour = np.clip(np.array(style[1], np.float32) * rng.uniform(0.9, 1.08, 3), 0, 1)
    brushed_axis = int(rng.integers(2)) if style[2] else None

    # low-frequency shading: a light gradient and mottling
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * scene_x + np.sin(angle) * scene_y) / size
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

    # the plate ends near one image edge; pins cross that edge over a dark fixture
    edge = ("bottom", "top", "left", "right")[rng.integers(4)]
    along, depth = _edge_coords(edge, scene_x, scene_y, size)
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
        targets.append((bond_x + pad, bond_y + pad, -1))
    grain_amp = np.where(pin_mask > 0.5, 0.03, grain_amp).astype(np.float32)
    base_area = (plate[..., 0] > 0.99) & (pin_mask < 0.01)

    components = _place_components(config, rng, edge, pin_depth, pad)
    # die-attach and solder pads under the components (part of the static base)
    attach_margin = 0.012 * size
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

    # bonding wires: each die to its nearest free targets (pins, chip terminals)
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
    for comp in components:
        comp.sprite = _render_sprite(comp, rng, size)

    grain = _grain_field(rng, hw, brushed_axis, scale)
    fresh_grain = _grain_field(rng, hw, brushed_axis, scale)
    template_label = np.zeros(hw, np.int16)
    for index, comp in enumerate(components):
        template_label[comp.y0 : comp.y0 + comp.height, comp.x0 : comp.x0 + comp.width] = index + 1

    scene = _BatchScene(
        pad,
        np.clip(base_rgb, 0, 1).astype(np.float32),
        grain_amp,
        grain,
        fresh_grain,
        base_area,
        components,
        wires,
        targets,
        template_label,
        np.zeros((size, size, 3), np.uint8),
    )
    offsets = np.zeros((len(components), 2), np.int64)
    template_scene, _ = _compose(
        scene, grain, offsets, _wire_layer([w.points for w in wires], config, hw)
    )
    crop = template_scene[pad : pad + size, pad : pad + size]
    noise_rng = _rng(config, 3, batch_index)
    noise = noise_rng.standard_normal(crop.shape, dtype=np.float32)
    scene.template = _to_uint8(crop + config.noise_std * noise)
    return scene


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


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


# ----------------------------------------------------------------------------- samples


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
        if kind == "base_crush":
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
        else:
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

        def alpha_fn(label):
            return alpha * (label == 0) * scene.base_area

        return hook, wires, alpha_fn

    if kind in ("contamination", "breakage"):
        index = int(rng.integers(len(scene.components)))
        comp = scene.components[index]
        x0, y0 = comp.x0 + offsets[index, 0], comp.y0 + offsets[index, 1]
        short = min(comp.width, comp.height)
        if kind == "contamination":
            radius = rng.uniform(*config.stain_radius) * short
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
            colour = _contrasting(
                rng,
                comp.sprite,
                [(0.30, 0.20, 0.10), (0.92, 0.90, 0.80), (0.75, 0.62, 0.25), (0.08, 0.08, 0.06)],
            )
            opacity = rng.uniform(0.7, 0.95)
            texture = 1 + 0.1 * scene.fresh_grain

            def hook(rgb, label, base_rgb):
                visible = (alpha * (label == index + 1))[..., None] * opacity
                return rgb * (1 - visible) + np.clip(colour * texture[..., None], 0, 1) * visible

            def alpha_fn(label):
                return alpha * (label == index + 1)
        else:
            chip_size = rng.uniform(*config.breakage_size) * short
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

            def alpha_fn(label):
                return damaged * (label == index + 1)

        return hook, wires, alpha_fn

    # wire_count: a missing wire (mask = where it should be) or an extra one (mask = it)
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
    size, pad, v = config.size, scene.pad, config.variation
    hw = scene.grain.shape

    # background spatial variation
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

    # texture: part of the grain is re-drawn (another device of the same type)
    mix = min(1.0, config.grain_change * config.texture_variation)
    roll = tuple(int(r) for r in rng.integers(0, hw[0], 2))
    grain = (
        (math.sqrt(1 - mix**2) * scene.grain + mix * np.roll(scene.fresh_grain, roll, axis=(0, 1)))
        if mix
        else scene.grain
    )

    label_cache = {}

    def canvas_label():
        if "label" not in label_cache:
            label = np.zeros(hw, np.int16)
            for index, comp in enumerate(scene.components):
                x0, y0 = comp.x0 + offsets[index, 0], comp.y0 + offsets[index, 1]
                label[max(y0, 0) : y0 + comp.height, max(x0, 0) : x0 + comp.width] = index + 1
            label_cache["label"] = label
        return label_cache["label"]

    ys, xs = np.meshgrid(
        np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij"
    )
    px, py = _inverse_similarity(params, size, xs, ys)
    warp = _Bilinear(px, py, pad, hw[0])
    min_pixels = max(4, round(0.0004 * size * size))
    fixed_wires = None if defect == "wire_count" else _wire_layer(wires, config, hw)
    for _attempt in range(60):
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
            break
        params.pop("wire_defect", None)
    else:
        raise RuntimeError(f"pair {pair_index}: could not place a visible {defect} defect")

    rgb, label = _compose(scene, grain, offsets, wire_layer, hook)
    sample = warp(rgb)  # [S, S, 3]

    # texture variation in the sample frame: colour, contrast, brightness, illumination
    t = config.texture_variation
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
    sample = sample + config.noise_std * rng.standard_normal(sample.shape, dtype=np.float32)

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


# ----------------------------------------------------------------------------- writing


def _batch_for_writing(job):
    """Render the pairs of one batch (one job per batch, so that each worker builds a batch
    scene once): (template, [(sample, mask, coarse_flow), ...])."""
    config, batch, indices = job
    results = []
    template = None
    for index in indices:
        pair = generate_pair(config, batch, index)
        template = pair.template if template is None else template
        results.append((pair.sample, pair.mask, pair.coarse_flow))
    return template, results


def write_synth_dataset(
    out_dir,
    config: SynthConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """Render the whole synthetic dataset into ``out_dir`` (atomically, via DatasetWriter):
    ``template/bNN.png`` once per batch, ``sample/``, ``mask/``, ``flow/`` per pair and
    ``synth_config.json`` (chapter 1, "The problem").

    ``pairs.csv`` columns: template, sample, mask, split (by batch), split_inbatch, batch,
    defect, flow.  ``workers`` (default: 2 for >= 64 pairs, else 1) only changes speed: every
    pair is deterministic on its own.
    """
    from tqdm import tqdm

    schedule = defect_schedule(config)
    by_batch = batch_splits(config)
    in_batch = inbatch_splits(config)
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if config.pairs >= 64 else 1
    members = {batch: [] for batch in range(config.batches)}
    for index, (batch, _) in enumerate(schedule):
        members[batch].append(index)
    jobs = [(config, batch, indices) for batch, indices in members.items()]
    with DatasetWriter(out_dir, overwrite=overwrite) as writer:
        writer.add_file(
            "synth_config.json",
            lambda path: path.write_text(json.dumps(config.to_dict(), indent=2) + "\n"),
        )
        pool = None
        if workers > 1:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            pool = multiprocessing.get_context(method).Pool(workers)
            results = pool.imap(_batch_for_writing, jobs)
        else:
            results = map(_batch_for_writing, jobs)
        bar = tqdm(total=config.pairs, desc="synth", unit="pair", disable=not progress)
        try:
            for (_, batch, indices), (template, pairs) in zip(jobs, results, strict=True):
                template_path = writer.add_image(f"template/b{batch:02d}.png", template)
                for index, (sample, mask, coarse_flow) in zip(indices, pairs, strict=True):
                    writer.add_row(
                        template=template_path,
                        sample=writer.add_image(f"sample/{index:04d}.png", sample),
                        mask=writer.add_image(f"mask/{index:04d}.png", mask),
                        split=by_batch[batch],
                        split_inbatch=in_batch[index],
                        batch=batch,
                        defect=schedule[index][1],
                        flow=writer.add_flow(f"flow/{index:04d}.npy", coarse_flow),
                    )
                    bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
    return Path(out_dir)
