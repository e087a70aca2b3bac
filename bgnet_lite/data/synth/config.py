"""Configuration, defect schedule and splits of the OCD-like generator (chapter 1, "The problem").

Nothing here renders: it fixes what every pair will be (its batch and defect type) and which
split every batch and pair belongs to, all deterministic in ``SynthConfig.seed``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..io import SPLITS

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
        labels = [name for name, n in zip(SPLITS, sizes, strict=True) for _ in range(n)]
        for rank, member in enumerate(order.tolist()):
            result[members[member]] = labels[rank]
    return result

