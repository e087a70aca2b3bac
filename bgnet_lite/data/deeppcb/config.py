"""DeepPCB's classes, the mask-derivation constants and the build configuration (chapter 1)."""

from __future__ import annotations

from dataclasses import dataclass

CLASSES = ("background", "open", "short", "mousebite", "spur", "copper", "pin-hole")
# Classes whose defect is extra copper in the test image; the others are missing copper.
ADDED_COPPER_CLASSES = frozenset({2, 4, 5})

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
