"""Honest pixel masks inside DeepPCB's annotation boxes, and the defect-free control boxes
that measure how much alignment noise leaks into them (chapter 1, "The problem")."""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

from .config import (
    ADDED_COPPER_CLASSES,
    BINARY_THRESHOLD,
    BOX_EXCLUSION,
    CONTROL_CANDIDATES,
    CONTROL_GAP,
    LOCAL_SHIFT,
    MAX_GLOBAL_SHIFT,
    RING_WIDTH,
    SHIFT_ABS_TOL,
    SHIFT_REL_TOL,
    SMALLER_BOX_WINS,
)


def binarize(image: np.ndarray) -> np.ndarray:
    """Copper mask of a DeepPCB image (chapter 1): copper is *dark*, so copper = pixel < 128.

    DeepPCB is nearly binary (any threshold in 64-192 agrees).  Dark = copper is measured, not
    assumed: in every group, boxes labelled short/spur/copper gain dark pixels and boxes
    labelled open/mousebite/pin-hole lose them.
    """
    if image.ndim == 3:
        image = image.mean(axis=2)
    return image < BINARY_THRESHOLD


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
