"""Run profiles: how big every chapter and training run is (preface, chapter 7).

``quick`` is for CI and nbval (seconds per chapter), ``cpu`` for a reader's laptop (minutes; what
the committed chapters show), ``full`` for a GPU at paper scale.  The active profile comes from the
``BGNET_PROFILE`` environment variable (default ``cpu``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    image_size: int  # training / evaluation resolution of the OCD-like pairs
    pairs: int  # pairs generated for the OCD-like set
    steps: int  # optimisation steps per training run
    batch_size: int
    eval_every: int  # validation period in steps
    val_pairs: int  # cap on validation pairs per evaluation (0 = all)
    lr: float
    # alpha of an alpha-balanced focal loss (defect pixels weigh alpha, background 1 - alpha);
    # 0 = the paper's unweighted focal loss. See results/investigation-cpu.json for why the
    # laptop profiles weight defects.
    focal_alpha: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    "quick": Profile("quick", image_size=64, pairs=48, steps=8, batch_size=4, eval_every=8,
                     val_pairs=8, lr=1e-3, focal_alpha=0.9),
    # sized for 5-7 minutes per run on an idle 2-core machine: far from converged (see
    # results/ablation-cpu.json and results/investigation-cpu.json); `full` is the profile
    # that reproduces the paper's setting
    "cpu": Profile("cpu", image_size=128, pairs=918, steps=300, batch_size=4, eval_every=100,
                   val_pairs=16, lr=1e-3, focal_alpha=0.9),
    "full": Profile("full", image_size=256, pairs=918, steps=20000, batch_size=8,
                    eval_every=1000, val_pairs=0, lr=1e-4, focal_alpha=0.0),
}


def get_profile(name: str | None = None) -> Profile:
    """The named profile, or the one ``BGNET_PROFILE`` selects (default ``cpu``)."""
    name = name or os.environ.get("BGNET_PROFILE", "cpu")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
