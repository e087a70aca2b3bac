"""Where a chapter's stored outputs came from (preface): profile, commit, device, date, versions.

Every chapter's first code cell prints this, so a reader can tell which run produced the numbers
and figures saved in the notebook.
"""

from __future__ import annotations

import datetime
import platform
import subprocess
from pathlib import Path

from bgnet_lite.profiles import get_profile

REPO_ROOT = Path(__file__).resolve().parent.parent


def git_commit(repo: str | Path = REPO_ROOT) -> str:
    """Short hash of ``HEAD`` in ``repo``, or ``"unknown"`` outside git / before the first commit.

    Taught in the preface.
    """
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else "unknown"


def device_name() -> str:
    """The accelerator torch would use (CUDA name, Apple MPS) or the CPU (preface)."""
    import torch  # here, so importing this module stays cheap

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps: Apple GPU"
    return f"cpu: {platform.processor() or platform.machine()}"


def provenance(profile: str | None = None) -> dict:
    """Profile, git commit, device, date and python/torch versions of this run (preface).

    ``profile`` defaults to the one ``BGNET_PROFILE`` selects (see ``bgnet_lite.profiles``).
    """
    import torch

    return {
        "profile": get_profile(profile).name,
        "commit": git_commit(),
        "device": device_name(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def print_provenance(profile: str | None = None) -> dict:
    """Print :func:`provenance` as aligned ``key: value`` lines and return it (preface)."""
    info = provenance(profile)
    width = max(len(key) for key in info)
    for key, value in info.items():
        print(f"{key:<{width}} : {value}")
    return info
