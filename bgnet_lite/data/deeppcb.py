"""DeepPCB as a bgnet-lite dataset, with honest pixel masks (chapter 1, "The problem").

DeepPCB (``tangsanli5201/DeepPCB``, MIT licence plus the authors' "research use only") holds
1,500 pairs of 640x640 binarized PCB images: a defect-free template ``Gxxx_temp.jpg`` and a
tested image ``Gxxx_test.jpg``, with one annotation box per defect (6 classes) and no pixel masks.

Why the masks are derived with care: the pairs are *not* perfectly aligned (1-px edge jitter
almost everywhere, 274 pairs shifted by 1-11 px, some with scale or trace-width changes), so
"pixels in the box where test != template" is mostly alignment noise for thin defects.  The
derivation here (``derive_pair_mask``) therefore

1. binarizes both images (threshold 128);
2. re-aligns the template by one global integer shift (the mismatch count over all shifts
   within +-``MAX_GLOBAL_SHIFT`` px, computed with FFT correlations, outside every box; the
   smallest shift within a small tolerance of the best wins);
3. per box, refines that shift within +-``LOCAL_SHIFT`` px on a ring around the box that
   excludes all boxes (same rule);
4. keeps only the polarity the class implies: *added* copper (test on, template off) for short,
   spur and copper; *removed* copper (template on, test off) for open, mousebite and pin-hole;
5. applies a 3x3 opening (kills 1-2 px alignment slivers), then regrows what survives to its
   full connected shape (4-connected components of the polarity difference that contain a
   surviving pixel, i.e. morphological reconstruction);
6. clips to the box.  Where boxes overlap, the smaller box wins (``SMALLER_BOX_WINS``).

Defect-free *control boxes* (same sizes as the real boxes, away from every annotation, with a
similar amount of copper edge) go through the same derivation; their non-empty share measures
how much alignment noise leaks into the masks (and the naive in-box difference is reported
beside it).

Output resolution and misalignment are documented on ``DeepPCBConfig``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

from bgnet_lite.data.io import DataError, DatasetWriter, read_image

CLASSES = ("background", "open", "short", "mousebite", "spur", "copper", "pin-hole")
# Classes whose defect is extra copper in the test image; the others are missing copper.
ADDED_COPPER_CLASSES = frozenset({2, 4, 5})

ARCHIVE_URL = "https://github.com/tangsanli5201/DeepPCB/archive/refs/heads/master.zip"
ARCHIVE_TOP = "DeepPCB-master"
DEFAULT_CACHE = Path("~/.cache/bgnet-lite/deeppcb")

# Pairs left out on purpose, with the reason printed in the statistics.
EXCLUDED_PAIRS = {
    "group44000/44000/44000020": "annotation boxes and labels are drawn into the test image",
}

BINARY_THRESHOLD = 128
MAX_GLOBAL_SHIFT = 16  # px at 640^2; the largest shift in DeepPCB is 11 px
LOCAL_SHIFT = 3  # px, per-box refinement around the global shift
RING_WIDTH = 16  # px, the ring around a box on which its local shift is estimated
BOX_EXCLUSION = 2  # px, boxes are dilated by this much before they are excluded from rings
# A larger shift must beat the smaller one by more than this (mismatch counts) to be chosen.
SHIFT_REL_TOL = 0.05
SHIFT_ABS_TOL = 4
SMALLER_BOX_WINS = True  # overlapping boxes: the smaller box's class is painted last
FLOW_STRIDE = 4  # flow grid stride s (io.py), when the output size allows it
CONTROL_CANDIDATES = 40  # random placements tried per control box
CONTROL_GAP = 4  # px kept between a control box and any annotation box


@dataclass
class DeepPCBConfig:
    """How to build the dataset (chapter 1).

    - ``size``: output side N.  Images are area-averaged to N x N and thresholded back to binary
      (0/255); masks keep every class that covers any part of an output pixel (per-class max
      pooling, the class with the largest coverage wins) so 1-2 px defects survive the 640 -> N
      reduction.  This slightly grows masks by up to one output pixel.
    - ``misalign``: M >= 0.  After the mask is derived, the *template* is warped by a random
      rotation about the image centre, angle uniform in +-M*50 degrees, and a random shift,
      uniform in +-M*N px per axis (M = 0.02 -> up to +-2% of the image and +-1 degree).  The
      sample and mask are untouched.
    - The ``flow`` column is always written: sample pixel -> template coordinate
      (io.py's definition, stride ``FLOW_STRIDE``) = the estimated global shift composed with the
      synthetic warp, NaN where the template does not show that point.  With misalign=0 it is
      identity for pairs the re-alignment found aligned and the measured shift otherwise (an
      estimate: the few pairs with scale changes are not rigid).
    - ``limit``: process only the first K listed pairs of each official split (tests use it).
    - ``val_fraction``: share of the official trainval pairs carved out as ``val``
      (deterministic: the pairs with the lowest seeded hash of their id).
    - ``workers``: processes for the per-pair work (results are independent of it).
    """

    size: int = 256
    misalign: float = 0.0
    seed: int = 0
    limit: int | None = None
    val_fraction: float = 0.1
    workers: int = 2


# ----------------------------------------------------------------------------- source

def find_pcbdata(source: str | os.PathLike) -> Path:
    """Return the ``PCBData`` folder inside ``source`` (or ``source`` itself) (chapter 1).

    Expected layout: ``PCBData/trainval.txt``, ``PCBData/test.txt`` and
    ``PCBData/groupG/G/Gxxx_temp.jpg`` / ``Gxxx_test.jpg`` / ``PCBData/groupG/G_not/Gxxx.txt``.
    """
    source = Path(source).expanduser()
    for candidate in (source / "PCBData", source):
        if (candidate / "trainval.txt").is_file() and (candidate / "test.txt").is_file():
            if any(candidate.glob("group*")):
                return candidate
    raise DataError(
        f"{source}: not a DeepPCB folder; expected {source}/PCBData/ (or this folder itself) "
        "holding trainval.txt, test.txt and groupG/G/Gxxx_temp.jpg, Gxxx_test.jpg, "
        "groupG/G_not/Gxxx.txt as in github.com/tangsanli5201/DeepPCB. Pass --download to "
        "fetch it, or --source pointing at a copy such as shared/datasets/deeppcb"
    )


def _safe_extract(archive: zipfile.ZipFile, target: Path) -> None:
    for member in archive.namelist():
        resolved = (target / member).resolve()
        if not str(resolved).startswith(str(target.resolve()) + os.sep):
            raise DataError(f"archive member {member!r} points outside {target}; refusing it")
    archive.extractall(target)


def download_deeppcb(cache_dir: str | os.PathLike | None = None) -> Path:
    """Download and unpack the DeepPCB repository archive; return its ``PCBData`` (chapter 1).

    The archive goes to ``cache_dir`` (default ``~/.cache/bgnet-lite/deeppcb``) as ``.part`` and
    is renamed when complete; extraction goes to a temporary folder renamed at the end, so an
    interrupted run leaves nothing half-written.  A finished download is reused.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE.expanduser()
    extracted = cache / ARCHIVE_TOP
    if (extracted / "PCBData" / "trainval.txt").is_file():
        return find_pcbdata(extracted)
    cache.mkdir(parents=True, exist_ok=True)
    zip_path = cache / f"{ARCHIVE_TOP}.zip"
    if not zip_path.is_file():
        part = zip_path.with_name(zip_path.name + ".part")
        try:
            with urllib.request.urlopen(ARCHIVE_URL, timeout=60) as response, \
                    open(part, "wb") as handle:
                shutil.copyfileobj(response, handle, length=1 << 20)
            os.replace(part, zip_path)
        except (urllib.error.URLError, OSError) as error:
            part.unlink(missing_ok=True)
            raise DataError(
                f"could not download {ARCHIVE_URL} ({error}); download it by hand, unzip it and "
                "pass --source pointing at the unzipped folder"
            ) from error
    tmp = Path(tempfile.mkdtemp(prefix=".extract.", suffix=".part", dir=cache))
    try:
        with zipfile.ZipFile(zip_path) as archive:
            _safe_extract(archive, tmp)
        if extracted.exists():
            shutil.rmtree(extracted)
        os.replace(tmp / ARCHIVE_TOP, extracted)
    except zipfile.BadZipFile as error:
        zip_path.unlink(missing_ok=True)
        raise DataError(f"{zip_path}: not a valid zip archive ({error}); run again") from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return find_pcbdata(extracted)


def _read_split(pcbdata: Path, name: str) -> list[tuple[str, str]]:
    """``[(pair_stem, annotation_relpath)]`` from ``trainval.txt`` / ``test.txt``."""
    path = pcbdata / name
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].endswith(".jpg"):
            raise DataError(
                f"{path}:{number}: expected 'path/Gxxx.jpg path/Gxxx.txt', got {line!r}"
            )
        entries.append((parts[0][: -len(".jpg")], parts[1]))
    return entries


def read_boxes(path: str | os.PathLike, image_hw: tuple[int, int]) -> list[tuple[int, ...]]:
    """Read a DeepPCB annotation file: one ``x1,y1,x2,y2,type`` per line (chapter 1).

    Coordinates are inclusive pixel indices (clipped to the image); type is 1..6.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    height, width = image_hw
    boxes = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = [f for f in re.split(r"[\s,]+", line.strip()) if f]
        if not fields:
            continue
        try:
            x1, y1, x2, y2, cls = (int(f) for f in fields)
        except ValueError:
            raise DataError(
                f"{path}:{number}: expected five integers 'x1 y1 x2 y2 type', got {line!r}"
            ) from None
        if not 1 <= cls < len(CLASSES):
            raise DataError(f"{path}:{number}: defect type {cls} is not in 1..{len(CLASSES) - 1}")
        x1, x2 = sorted((min(max(x1, 0), width - 1), min(max(x2, 0), width - 1)))
        y1, y2 = sorted((min(max(y1, 0), height - 1), min(max(y2, 0), height - 1)))
        boxes.append((x1, y1, x2, y2, cls))
    return boxes


def binarize(image: np.ndarray) -> np.ndarray:
    """Copper mask of a DeepPCB image (chapter 1): copper is *dark*, so copper = pixel < 128.

    DeepPCB is nearly binary (any threshold in 64-192 agrees).  Dark = copper is measured, not
    assumed: in every group, boxes labelled short/spur/copper gain dark pixels and boxes
    labelled open/mousebite/pin-hole lose them.
    """
    if image.ndim == 3:
        image = image.mean(axis=2)
    return image < BINARY_THRESHOLD


# ----------------------------------------------------------------------------- masks

def _box_union(shape: tuple[int, int], boxes, grow: int) -> np.ndarray:
    union = np.zeros(shape, dtype=bool)
    for x1, y1, x2, y2, *_ in boxes:
        union[max(0, y1 - grow): y2 + 1 + grow, max(0, x1 - grow): x2 + 1 + grow] = True
    return union


def estimate_global_shift(template_bin: np.ndarray, test_bin: np.ndarray, boxes,
                          max_shift: int = MAX_GLOBAL_SHIFT) -> tuple[int, int]:
    """Integer ``(dy, dx)`` minimising the mismatch of ``template[y - dy, x - dx]`` and
    ``test[y, x]`` outside the boxes, over all shifts within +-``max_shift`` (chapter 1).

    The mismatch count for every shift comes from two FFT correlations (the full search, not
    a peak heuristic): ``sum w*(s xor t_d) = sum w*s + (w * t)(d) - 2 (w*s * t)(d)`` with weight
    ``w`` = interior pixels outside the boxes.  The smallest shift whose count is within
    tolerance of the minimum wins (``_pick_shift``): boards with only vertical traces cannot
    tell a vertical shift, and slight skew would otherwise pull it to the search limit.
    """
    height, width = test_bin.shape
    weight = np.zeros((height, width), dtype=np.float32)  # [H, W]
    weight[max_shift: height - max_shift, max_shift: width - max_shift] = 1.0
    weight[_box_union((height, width), boxes, BOX_EXCLUSION)] = 0.0
    test_f = test_bin.astype(np.float32)
    template_spec = np.conj(sp_fft.rfft2(template_bin.astype(np.float32)))

    def correlate(field):  # out[d] = sum_p field(p) * template(p - d), d modulo the size
        return sp_fft.irfft2(sp_fft.rfft2(field) * template_spec, s=(height, width))

    mismatch = (weight * test_f).sum() + correlate(weight) - 2.0 * correlate(weight * test_f)
    offsets = np.arange(-max_shift, max_shift + 1)
    grid = mismatch[np.ix_(offsets % height, offsets % width)]  # [2m+1, 2m+1]
    dy_grid, dx_grid = np.meshgrid(offsets, offsets, indexing="ij")
    shifts = list(zip(dy_grid.ravel().tolist(), dx_grid.ravel().tolist(), strict=True))
    return _pick_shift(np.rint(grid.ravel()), shifts)


def _pick_shift(costs: np.ndarray, shifts: list[tuple[int, int]]) -> tuple[int, int]:
    """The smallest shift (L1, then L-inf) whose mismatch is within ``SHIFT_REL_TOL`` and
    ``SHIFT_ABS_TOL`` of the minimum; the cost breaks remaining ties."""
    limit = costs.min() * (1.0 + SHIFT_REL_TOL) + SHIFT_ABS_TOL
    candidates = [(abs(dy) + abs(dx), max(abs(dy), abs(dx)), cost, (dy, dx))
                  for cost, (dy, dx) in zip(costs.tolist(), shifts, strict=True)
                  if cost <= limit]
    return min(candidates)[3]


_LOCAL_OFFSETS = [(dy, dx) for dy in range(-LOCAL_SHIFT, LOCAL_SHIFT + 1)
                  for dx in range(-LOCAL_SHIFT, LOCAL_SHIFT + 1)]
_OPEN_3X3 = np.ones((3, 3), dtype=bool)


def _derive_box(template_pad, pad, test_bin, exclusion, box, cls, global_shift):
    """Mask of one box (bool ``[y2-y1+1, x2-x1+1]``) and the shift used for it."""
    height, width = test_bin.shape
    x1, y1, x2, y2 = box
    ry0, ry1 = max(0, y1 - RING_WIDTH), min(height, y2 + 1 + RING_WIDTH)
    rx0, rx1 = max(0, x1 - RING_WIDTH), min(width, x2 + 1 + RING_WIDTH)
    ring = ~exclusion[ry0:ry1, rx0:rx1]  # [h_r, w_r]
    ring[y1 - ry0: y2 + 1 - ry0, x1 - rx0: x2 + 1 - rx0] = False
    test_ring = test_bin[ry0:ry1, rx0:rx1]

    def aligned(y0, y1_, x0, x1_, dy, dx):  # template[y - dy, x - dx] on a window of test
        return template_pad[y0 - dy + pad: y1_ - dy + pad, x0 - dx + pad: x1_ - dx + pad]

    shift = global_shift
    if ring.any():
        costs = np.array([
            np.count_nonzero((aligned(ry0, ry1, rx0, rx1, global_shift[0] + ddy,
                                      global_shift[1] + ddx) != test_ring) & ring)
            for ddy, ddx in _LOCAL_OFFSETS
        ])
        ddy, ddx = _pick_shift(costs, _LOCAL_OFFSETS)
        shift = (global_shift[0] + ddy, global_shift[1] + ddx)

    # A 2-px margin lets the opening and the regrowth see defects cut by the box edge.
    by0, by1 = max(0, y1 - 2), min(height, y2 + 3)
    bx0, bx1 = max(0, x1 - 2), min(width, x2 + 3)
    template_win = aligned(by0, by1, bx0, bx1, *shift)
    test_win = test_bin[by0:by1, bx0:bx1]
    if cls in ADDED_COPPER_CLASSES:
        polarity_diff = test_win & ~template_win
    else:
        polarity_diff = template_win & ~test_win
    survivors = ndimage.binary_opening(polarity_diff, structure=_OPEN_3X3)
    regrown = np.zeros_like(polarity_diff)
    if survivors.any():
        labels, _ = ndimage.label(polarity_diff)  # 4-connected components
        kept = np.unique(labels[survivors])
        regrown = np.isin(labels, kept[kept > 0])
    return regrown[y1 - by0: y2 + 1 - by0, x1 - bx0: x2 + 1 - bx0], shift


def derive_pair_mask(template_bin: np.ndarray, test_bin: np.ndarray, boxes,
                     *, control_boxes=()) -> tuple[np.ndarray, dict]:
    """Honest multi-class defect mask of one DeepPCB pair (chapter 1).

    ``template_bin``, ``test_bin``: bool ``[H, W]`` (copper = True); ``boxes``: list of
    ``(x1, y1, x2, y2, cls)`` (inclusive pixel coordinates, cls 1..6).  Returns the uint8
    ``[H, W]`` mask (0 background, 1..6 class id, smaller box wins on overlaps) and ``info``:
    ``global_shift`` (dy, dx) with ``template[y - dy, x - dx] ~ test[y, x]``, and per box
    ``box_shifts``, ``box_pixels`` (its own mask size before overlap resolution) and
    ``box_areas``.  ``control_boxes`` (same tuple form, assumed defect-free) go through the
    identical derivation; ``info["controls"]`` lists ``(derived_pixels, naive_pixels)`` where
    naive = pixels in the box where the *unaligned* test and template differ.
    """
    template_bin = np.asarray(template_bin, dtype=bool)
    test_bin = np.asarray(test_bin, dtype=bool)
    if template_bin.shape != test_bin.shape or template_bin.ndim != 2:
        raise ValueError(f"template {template_bin.shape} and test {test_bin.shape} must be "
                         "equal 2-D shapes")
    boxes = [tuple(int(v) for v in box) for box in boxes]
    global_shift = estimate_global_shift(template_bin, test_bin, boxes)
    pad = MAX_GLOBAL_SHIFT + LOCAL_SHIFT + 1
    template_pad = np.pad(template_bin, pad)  # outside the template: no copper
    exclusion = _box_union(test_bin.shape, boxes, BOX_EXCLUSION)

    box_masks, box_shifts = [], []
    for x1, y1, x2, y2, cls in boxes:
        box_mask, shift = _derive_box(template_pad, pad, test_bin, exclusion,
                                      (x1, y1, x2, y2), cls, global_shift)
        box_masks.append(box_mask)
        box_shifts.append(shift)

    mask = np.zeros(test_bin.shape, dtype=np.uint8)  # [H, W]
    areas = [(x2 - x1 + 1) * (y2 - y1 + 1) for x1, y1, x2, y2, _ in boxes]
    # Paint large boxes first so the smaller (more specific) box wins on overlaps.
    paint_order = sorted(range(len(boxes)), key=lambda i: (-areas[i], i)) if SMALLER_BOX_WINS \
        else range(len(boxes))
    for index in paint_order:
        x1, y1, x2, y2, cls = boxes[index]
        region = mask[y1: y2 + 1, x1: x2 + 1]
        region[box_masks[index]] = cls

    controls = []
    for x1, y1, x2, y2, cls in control_boxes:
        control_mask, _ = _derive_box(template_pad, pad, test_bin, exclusion,
                                      (x1, y1, x2, y2), cls, global_shift)
        naive = np.count_nonzero(template_bin[y1: y2 + 1, x1: x2 + 1]
                                 != test_bin[y1: y2 + 1, x1: x2 + 1])
        controls.append((int(control_mask.sum()), int(naive)))

    info = {
        "global_shift": global_shift,
        "box_shifts": box_shifts,
        "box_pixels": [int(m.sum()) for m in box_masks],
        "box_areas": areas,
        "controls": controls,
    }
    return mask, info


def make_control_boxes(template_bin: np.ndarray, boxes, rng: np.random.Generator):
    """Defect-free control boxes for a pair (chapter 1): one per real box, same size and class,
    at least ``CONTROL_GAP`` px from every annotation box, chosen among random placements as
    the one whose template copper-edge count is closest to the real box's.  Real boxes with no
    free placement get no control."""
    height, width = template_bin.shape
    edges = np.zeros((height, width), dtype=bool)
    edges[:, :-1] |= template_bin[:, :-1] != template_bin[:, 1:]
    edges[:-1, :] |= template_bin[:-1, :] != template_bin[1:, :]
    integral = np.zeros((height + 1, width + 1), dtype=np.int32)
    integral[1:, 1:] = edges.cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)

    def edge_count(x1, y1, x2, y2):
        return (integral[y2 + 1, x2 + 1] - integral[y1, x2 + 1]
                - integral[y2 + 1, x1] + integral[y1, x1])

    blocked = _box_union((height, width), boxes, CONTROL_GAP)

    controls = []
    for x1, y1, x2, y2, cls in boxes:
        box_w, box_h = x2 - x1 + 1, y2 - y1 + 1
        if box_w >= width or box_h >= height:
            continue
        target = edge_count(x1, y1, x2, y2)
        xs = rng.integers(0, width - box_w + 1, CONTROL_CANDIDATES)
        ys = rng.integers(0, height - box_h + 1, CONTROL_CANDIDATES)
        best = None
        for cx, cy in zip(xs.tolist(), ys.tolist(), strict=True):
            cx2, cy2 = cx + box_w - 1, cy + box_h - 1
            if blocked[cy: cy2 + 1, cx: cx2 + 1].any():
                continue
            gap = abs(int(edge_count(cx, cy, cx2, cy2)) - int(target))
            if best is None or gap < best[0]:
                best = (gap, (cx, cy, cx2, cy2, cls))
        if best is not None:
            controls.append(best[1])
    return controls


# ----------------------------------------------------------------------------- resize, warp

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


# ----------------------------------------------------------------------------- one pair

def _pair_seed(seed: int, pair_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(pair_id.encode())])


def _process_pair(job):
    """Everything for one pair; runs in a worker.  Returns arrays + per-pair statistics."""
    pcbdata, stem, annotation, config = job
    pair_id = Path(stem).name
    template = binarize(read_image(pcbdata / f"{stem}_temp.jpg"))
    test = binarize(read_image(pcbdata / f"{stem}_test.jpg"))
    if template.shape != test.shape:
        raise DataError(f"{pcbdata / stem}_test.jpg: size {test.shape} differs from the "
                        f"template's {template.shape}")
    boxes = read_boxes(pcbdata / annotation, test.shape)
    rng = _pair_seed(config.seed, pair_id)
    controls = make_control_boxes(template, boxes, rng)
    mask, info = derive_pair_mask(template, test, boxes, control_boxes=controls)

    size = config.size
    template_small = resize_binary(template, size)
    sample_small = resize_binary(test, size)
    mask_small = resize_mask(mask, size)
    scale_y, scale_x = size / test.shape[0], size / test.shape[1]
    shift = (info["global_shift"][0] * scale_y, info["global_shift"][1] * scale_x)
    template_small, flow = misalign_template(template_small, shift, config.misalign, rng)
    return {
        "pair_id": pair_id,
        "template": np.where(template_small, 0, 255).astype(np.uint8),  # copper dark
        "sample": np.where(sample_small, 0, 255).astype(np.uint8),
        "mask": mask_small,
        "flow": flow,
        "boxes": boxes,
        "controls": controls,
        "info": info,
    }


# ----------------------------------------------------------------------------- dataset

def _val_pairs(pair_ids: list[str], fraction: float, seed: int) -> set[str]:
    def rank(pair_id):
        return hashlib.sha1(f"{seed}:{pair_id}".encode()).hexdigest()

    count = int(round(fraction * len(pair_ids)))
    return set(sorted(pair_ids, key=rank)[:count])


def _orphan_templates(pcbdata: Path) -> list[str]:
    orphans = []
    for template in sorted(pcbdata.glob("group*/*/*_temp.jpg")):
        if not template.with_name(template.name.replace("_temp.jpg", "_test.jpg")).is_file():
            orphans.append(str(template.relative_to(pcbdata))[: -len("_temp.jpg")])
    return orphans


def _shift_histogram(shifts) -> dict:
    bins = {"0": 0, "1": 0, "2-3": 0, "4-7": 0, "8+": 0}
    for dy, dx in shifts:
        size = max(abs(dy), abs(dx))
        key = "0" if size == 0 else "1" if size == 1 else "2-3" if size <= 3 else \
            "4-7" if size <= 7 else "8+"
        bins[key] += 1
    return bins


class _Tally:
    """Running mask-derivation statistics over the pairs."""

    def __init__(self):
        names = CLASSES[1:]
        self.boxes = {name: 0 for name in names}
        self.empty = {name: 0 for name in names}
        self.pixels = {name: 0.0 for name in names}
        self.share = {name: 0.0 for name in names}
        self.controls = {name: [0, 0, 0] for name in names}  # placed, derived>0, naive>0
        self.controls_missing = 0
        self.global_shifts, self.local_offsets = [], []
        self.splits = {split: 0 for split in ("train", "val", "test")}

    def add(self, result: dict, split: str) -> None:
        info = result["info"]
        self.splits[split] += 1
        global_dy, global_dx = info["global_shift"]
        self.global_shifts.append((global_dy, global_dx))
        for box, pixels, area, (dy, dx) in zip(result["boxes"], info["box_pixels"],
                                               info["box_areas"], info["box_shifts"],
                                               strict=True):
            name = CLASSES[box[4]]
            self.boxes[name] += 1
            self.empty[name] += int(pixels == 0)
            self.pixels[name] += pixels
            self.share[name] += pixels / area
            self.local_offsets.append((dy - global_dy, dx - global_dx))
        self.controls_missing += len(result["boxes"]) - len(result["controls"])
        for box, (derived, naive) in zip(result["controls"], info["controls"], strict=True):
            counts = self.controls[CLASSES[box[4]]]
            counts[0] += 1
            counts[1] += int(derived > 0)
            counts[2] += int(naive > 0)

    def summary(self) -> dict:
        placed, derived, naive = (sum(c[i] for c in self.controls.values()) for i in range(3))
        return {
            "per_split": self.splits,
            "boxes": {
                "per_class": self.boxes,
                "empty_per_class": self.empty,
                "mean_pixels_640": {k: self.pixels[k] / max(n, 1) for k, n in self.boxes.items()},
                "mean_box_share": {k: self.share[k] / max(n, 1) for k, n in self.boxes.items()},
            },
            "controls": {
                "boxes": placed,
                "not_placed": self.controls_missing,
                "derived_nonempty": derived,
                "derived_rate": derived / max(placed, 1),
                "naive_nonempty": naive,
                "naive_rate": naive / max(placed, 1),
                "per_class": {name: {"boxes": c[0], "derived_nonempty": c[1],
                                     "naive_nonempty": c[2]}
                              for name, c in self.controls.items()},
            },
            "global_shift": {
                "histogram_max_abs_px": _shift_histogram(self.global_shifts),
                "pairs_shifted": sum(s != (0, 0) for s in self.global_shifts),
                "max_abs_px": max((max(abs(dy), abs(dx)) for dy, dx in self.global_shifts),
                                  default=0),
            },
            "local_shift": {"histogram_max_abs_px": _shift_histogram(self.local_offsets)},
        }


def prepare_deeppcb(out_dir: str | os.PathLike, source: str | os.PathLike | None = None,
                    download: bool = False, config: DeepPCBConfig | None = None,
                    overwrite: bool = False, progress: bool = True) -> dict:
    """Build the DeepPCB dataset folder and return the mask-derivation statistics (chapter 1).

    Writes ``template/``, ``sample/`` (0/255 PNG), ``mask/`` (class-id PNG), ``flow/`` (.npy),
    ``pairs.csv`` (template, sample, mask, split, batch, defect, source, flow) and
    ``deeppcb_stats.json`` atomically.  Splits: official ``test.txt`` -> test; official
    ``trainval.txt`` -> train, with ``val_fraction`` of its pairs -> val.
    """
    config = config or DeepPCBConfig()
    if config.size < 8:
        raise DataError(f"--size {config.size}: choose an output size of at least 8 px")
    if config.misalign < 0:
        raise DataError(f"--misalign {config.misalign}: must be >= 0 (e.g. 0.02)")
    if source is not None and download:
        raise DataError("give either --source PATH or --download, not both")
    if source is None and not download:
        raise DataError(
            "no DeepPCB source: pass --download to fetch github.com/tangsanli5201/DeepPCB, or "
            "--source PATH to a folder holding PCBData/ (e.g. shared/datasets/deeppcb)"
        )
    pcbdata = download_deeppcb() if download else find_pcbdata(source)
    started = time.perf_counter()

    jobs, splits, excluded = [], {}, []
    for split_file, split in (("trainval.txt", "trainval"), ("test.txt", "test")):
        entries = _read_split(pcbdata, split_file)
        if config.limit is not None:
            entries = entries[: config.limit]
        for stem, annotation in entries:
            if stem in EXCLUDED_PAIRS:
                excluded.append({"pair": stem, "reason": EXCLUDED_PAIRS[stem]})
                continue
            missing = [p for p in (f"{stem}_temp.jpg", f"{stem}_test.jpg", annotation)
                       if not (pcbdata / p).is_file()]
            if missing:
                excluded.append({"pair": stem, "reason": "missing " + ", ".join(missing)})
                continue
            if Path(stem).name in splits:
                raise DataError(f"{pcbdata / split_file}: pair {Path(stem).name} is listed "
                                "twice; each pair id must be unique")
            jobs.append((pcbdata, stem, annotation, config))
            splits[Path(stem).name] = split
    trainval_ids = [pid for pid, split in splits.items() if split == "trainval"]
    val_ids = _val_pairs(trainval_ids, config.val_fraction, config.seed)
    listed = {stem for stem, _ in _read_split(pcbdata, "trainval.txt")} | \
        {stem for stem, _ in _read_split(pcbdata, "test.txt")}
    unlisted = [{"pair": stem, "reason": "template without test image or annotation, not in "
                 "the split files"} for stem in _orphan_templates(pcbdata) if stem not in listed]

    tally = _Tally()
    writer = DatasetWriter(out_dir, overwrite=overwrite)
    try:
        if config.workers > 1 and len(jobs) > 1:
            # fork is cheap on Linux; elsewhere spawn is the safe default.
            pool = get_context("fork" if sys.platform.startswith("linux") else "spawn").Pool(
                config.workers)
            results = pool.imap(_process_pair, jobs, chunksize=4)
        else:
            pool, results = None, map(_process_pair, jobs)
        try:
            if progress:
                from tqdm import tqdm

                results = tqdm(results, total=len(jobs), desc="DeepPCB pairs", file=sys.stderr)
            for job, result in zip(jobs, results, strict=True):
                stem, pair_id = job[1], result["pair_id"]
                split = "test" if splits[pair_id] == "test" else \
                    "val" if pair_id in val_ids else "train"
                tally.add(result, split)

                paths = {kind: writer.add_image(f"{kind}/{pair_id}.png", result[kind])
                         for kind in ("template", "sample", "mask")}
                paths["flow"] = writer.add_flow(f"flow/{pair_id}.npy", result["flow"])
                writer.add_row(
                    template=paths["template"], sample=paths["sample"], mask=paths["mask"],
                    split=split, batch=Path(stem).parts[0].removeprefix("group"),
                    defect=" ".join(CLASSES[c] for c in _classes_present(result["mask"])),
                    source=f"PCBData/{stem}_test.jpg", flow=paths["flow"],
                )
        finally:
            if pool is not None:  # every result is consumed, or we are failing anyway
                pool.terminate()
                pool.join()

        stats = {
            "source": str(pcbdata),
            "config": asdict(config),
            "pairs": {"used": len(jobs), "excluded": excluded + unlisted},
            **tally.summary(),
            "wall_s": time.perf_counter() - started,
        }
        writer.add_file("deeppcb_stats.json", lambda path: path.write_text(
            json.dumps(stats, indent=2) + "\n"))
        # multi-class masks: the folder format reads class names from classes.json
        writer.add_file("classes.json", lambda path: path.write_text(json.dumps(list(CLASSES))))
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return stats


def format_stats(stats: dict) -> str:
    """The mask-derivation statistics as a printable report (chapter 1)."""
    pairs, boxes, controls = stats["pairs"], stats["boxes"], stats["controls"]
    lines = [
        f"DeepPCB from {stats['source']}",
        f"pairs used: {pairs['used']}  (train {stats['per_split']['train']}, "
        f"val {stats['per_split']['val']}, test {stats['per_split']['test']})",
        f"pairs excluded: {len(pairs['excluded'])}",
    ]
    lines += [f"  {item['pair']}: {item['reason']}" for item in pairs["excluded"]]
    lines.append(f"{'class':<10} {'boxes':>6} {'empty':>6} {'mean px@640':>12} "
                 f"{'share of box':>13} {'controls':>9} {'ctl derived':>12} {'ctl naive':>10}")
    for name in CLASSES[1:]:
        control = controls["per_class"][name]
        lines.append(f"{name:<10} {boxes['per_class'][name]:>6} "
                     f"{boxes['empty_per_class'][name]:>6} "
                     f"{boxes['mean_pixels_640'][name]:>12.1f} "
                     f"{boxes['mean_box_share'][name]:>13.3f} {control['boxes']:>9} "
                     f"{control['derived_nonempty']:>12} {control['naive_nonempty']:>10}")
    total = sum(boxes["per_class"].values())
    total_empty = sum(boxes["empty_per_class"].values())
    lines.append(f"{'all':<10} {total:>6} {total_empty:>6}")
    lines.append(
        f"control boxes: {controls['boxes']} (not placed: {controls['not_placed']}); "
        f"non-empty derived {controls['derived_nonempty']} ({100 * controls['derived_rate']:.1f}%)"
        f", naive in-box difference {controls['naive_nonempty']} "
        f"({100 * controls['naive_rate']:.1f}%)"
    )
    shifts = stats["global_shift"]
    hist = "  ".join(f"{k}px: {v}" for k, v in shifts["histogram_max_abs_px"].items())
    lines.append(f"global shift (max |dy|,|dx|): {hist}; shifted pairs {shifts['pairs_shifted']}"
                 f", max {shifts['max_abs_px']} px")
    local = "  ".join(f"{k}px: {v}"
                      for k, v in stats["local_shift"]["histogram_max_abs_px"].items())
    lines.append(f"per-box refinement beyond the global shift: {local}")
    lines.append(f"wall time: {stats['wall_s']:.1f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Command line: ``prepare_deeppcb.py OUT [--source PATH | --download] ...`` (chapter 1)."""
    parser = argparse.ArgumentParser(
        description="Build a bgnet-lite dataset from DeepPCB with honest pixel masks.")
    parser.add_argument("out", help="output dataset folder")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--source", help="folder holding PCBData/ (or PCBData itself)")
    group.add_argument("--download", action="store_true",
                       help="download the DeepPCB repository archive to ~/.cache/bgnet-lite")
    defaults = DeepPCBConfig()
    parser.add_argument("--size", type=int, default=defaults.size, help="output side in px")
    parser.add_argument("--misalign", type=float, default=defaults.misalign,
                        help="template misalignment M: shift +-M*size, rotation +-M*50 deg")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first K pairs of each official split")
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = parser.parse_args(argv)
    config = DeepPCBConfig(size=args.size, misalign=args.misalign, seed=args.seed,
                           limit=args.limit, workers=args.workers)
    try:
        stats = prepare_deeppcb(args.out, source=args.source, download=args.download,
                                config=config, overwrite=args.overwrite)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_stats(stats))
    print(f"written: {args.out}")
    return 0
