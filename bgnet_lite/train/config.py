"""What a training run needs: the method by name, its options, and the training settings
(chapter 7).  Unset settings come from the profile (``bgnet_lite.profiles``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bgnet_lite.methods import get_method
from bgnet_lite.profiles import get_profile

LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """One training run (chapter 7).

    method: a registered name (``bgnet-lite methods``); options: that method's options, e.g.
    ``{"theta": 0.3, "local_match_px": 6.0}`` for BGNet; the method's defaults otherwise.
    lr_schedule: "constant" (the paper names none) or "cosine" (torch's CosineAnnealingLR,
    decaying to 0 at the last step).  focal_alpha: alpha-balanced focal loss, 0 = off (the
    paper).  The paper's learning rate is printed as "10e-5": the profiles choose.
    monitor_every: also record the validation metrics every this many steps, for a denser
    curve; the best checkpoint is still chosen at the ``eval_every`` steps only, so the
    trained model is the same with or without it (None = off).
    """

    data: str
    out: str
    method: str = "bgnet-s5"
    options: dict = field(default_factory=dict)
    profile: str | None = None
    size: int | None = None
    steps: int | None = None
    seed: int = 0
    lr: float | None = None
    lr_schedule: str = "constant"
    batch_size: int | None = None
    eval_every: int | None = None
    monitor_every: int | None = None
    val_pairs: int | None = None
    focal_alpha: float | None = None
    device: str | None = None
    resume: bool = False  # go on from RUN/last.pt (same method and settings; steps may grow)
    overwrite: bool = False  # replace the run already in RUN
    augment: bool = True

    def __post_init__(self):
        profile = get_profile(self.profile)
        self.profile = profile.name
        for name in ("steps", "batch_size", "eval_every", "val_pairs", "lr", "focal_alpha"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(profile, name))
        if self.size is None:
            self.size = profile.image_size
        get_method(self.method)  # an unknown name fails here, with the list of names
        self.options = dict(self.options)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                             f"got {self.lr_schedule!r}")
        if self.monitor_every is not None and self.monitor_every < 1:
            raise ValueError(f"monitor_every must be a positive number of steps or None, "
                             f"got {self.monitor_every}")
        if not 0 <= self.focal_alpha < 1:
            raise ValueError(f"focal_alpha must be in [0, 1) (0 = off, the paper), "
                             f"got {self.focal_alpha}")
