"""Datasets the chapters need, generated once per profile and reused (chapters 1-8).

Everything lands under :func:`bgnet_lite.paths.data_root` (``$BGNET_HOME/data``, or ``data/`` in
the current directory), looked up at every call, never in the installed package: generated data is
never committed.  DeepPCB is prepared from a local copy when one is found (``BGNET_DEEPPCB``, or
``shared/datasets/deeppcb`` beside the home folder or beside this checkout; only read); the book
says how to download it otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..paths import data_root, home
from ..profiles import get_profile
from ..provenance import REPO_ROOT

# background motions the generator can isolate (the robustness curve of the Table 1 chapter):
# "all" = the default mix; "shift" = a global shift only; "rotation" = a global rotation only
MOTIONS = {
    "all": {},
    "shift": {"max_rotation_deg": 0.0, "max_scale_change": 0.0, "component_shift": 0.0,
              "wire_jitter": 0.0},
    "rotation": {"max_shift": 0.0, "max_scale_change": 0.0, "component_shift": 0.0,
                 "wire_jitter": 0.0},
}


def ensure_synth(profile: str | None = None, *, variation: float = 1.0, seed: int = 0,
                 motion: str = "all", progress: bool = False) -> Path:
    """The OCD-like dataset of a profile (``pairs`` and ``image_size`` from the profile),
    generated on first use into ``<data root>/ocd-<pairs>-<size>-v<variation>-s<seed>``
    (chapter 1); ``motion`` other than "all" keeps one kind of background motion only
    (``MOTIONS``) and adds ``-<motion>`` to the folder name."""
    from .synth import SynthConfig, write_synth_dataset

    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {', '.join(MOTIONS)}, got {motion!r}")
    active = get_profile(profile)
    config = SynthConfig(pairs=active.pairs, size=active.image_size, seed=seed,
                         variation=variation, **MOTIONS[motion])
    suffix = "" if motion == "all" else f"-{motion}"
    out = data_root() / f"ocd-{config.pairs}-{config.size}-v{variation:g}-s{seed}{suffix}"
    if not (out / "pairs.csv").is_file():
        write_synth_dataset(out, config, overwrite=True, progress=progress)
    return out


def find_deeppcb_source() -> Path | None:
    """A local DeepPCB copy to read from (chapter 1): ``$BGNET_DEEPPCB``, else
    ``shared/datasets/deeppcb`` beside the home folder, else beside this checkout; None when
    there is none."""
    candidates = [
        os.environ.get("BGNET_DEEPPCB"),
        home().resolve().parent / "shared/datasets/deeppcb",
        REPO_ROOT.parent / "shared/datasets/deeppcb",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "PCBData").is_dir():
            return Path(candidate)
    return None


def ensure_deeppcb(size: int = 128, limit: int | None = 20, misalign: float = 0.0,
                   progress: bool = False) -> Path | None:
    """DeepPCB prepared at ``size`` (first ``limit`` pairs per split) under the data root, or
    None without a local copy (chapter 1)."""
    from .deeppcb import DeepPCBConfig, prepare_deeppcb

    source = find_deeppcb_source()
    if source is None:
        return None
    out = data_root() / f"deeppcb-{size}-l{limit or 'all'}-m{misalign:g}"
    if not (out / "pairs.csv").is_file():
        prepare_deeppcb(out, source=source, config=DeepPCBConfig(size=size, limit=limit,
                                                                 misalign=misalign),
                        overwrite=True, progress=progress)
    return out
