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

Modules: ``config`` (classes, constants, DeepPCBConfig), ``source`` (finding, downloading and
reading the source), ``masks`` (the derivation above), ``resize`` (output size, misalignment,
flow), ``stats`` (the report) and ``prepare`` (the folder; ``bgnet-lite data deeppcb`` is its
command line).
"""

from .config import ADDED_COPPER_CLASSES, CLASSES, EXCLUDED_PAIRS, DeepPCBConfig
from .masks import binarize, derive_pair_mask, estimate_global_shift, make_control_boxes
from .prepare import prepare_deeppcb
from .resize import misalign_template, resize_binary, resize_mask
from .source import download_deeppcb, find_pcbdata, read_boxes
from .stats import format_stats

__all__ = [
    "ADDED_COPPER_CLASSES",
    "CLASSES",
    "EXCLUDED_PAIRS",
    "DeepPCBConfig",
    "binarize",
    "derive_pair_mask",
    "download_deeppcb",
    "estimate_global_shift",
    "find_pcbdata",
    "format_stats",
    "make_control_boxes",
    "misalign_template",
    "prepare_deeppcb",
    "read_boxes",
    "resize_binary",
    "resize_mask",
]
