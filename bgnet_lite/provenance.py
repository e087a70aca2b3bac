"""Where a chapter's stored outputs came from (preface): profile, commit, device, date, versions
and the chapter's wall time.

Every chapter's first code cell shows this (:func:`show_provenance`) and its last code cell
fills in the wall time (:func:`finish_provenance`), so a reader can tell which run produced the
numbers and figures saved in the notebook and how long it took.
"""

from __future__ import annotations

import datetime
import platform
import subprocess
import time
from pathlib import Path

from bgnet_lite.profiles import get_profile

REPO_ROOT = Path(__file__).resolve().parent.parent


# the code that produces results; "-dirty" when a tracked file here differs from HEAD
CODE_PATHS = ("bgnet_lite", "experiments", "tools", "benchmarks")


def git_commit(repo: str | Path = REPO_ROOT) -> str:
    """Short hash of ``HEAD`` in ``repo``, or ``"unknown"`` outside git / before the first commit.

    ``-dirty`` is appended when tracked files under :data:`CODE_PATHS` have uncommitted
    changes, so a result never names a commit whose code did not produce it (notebooks being
    executed, data and runs do not count).  Taught in the preface.
    """
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                                capture_output=True, text=True, timeout=10)
        commit = result.stdout.strip()
        if result.returncode != 0 or not commit:
            return "unknown"
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            cwd=repo, capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + "-dirty" if status.returncode == 0 and status.stdout.strip() else commit


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


def format_provenance(info: dict) -> str:
    """Aligned ``key : value`` lines (preface)."""
    width = max(len(key) for key in info)
    return "\n".join(f"{key:<{width}} : {value}" for key, value in info.items())


class _ChapterClock:
    """The running chapter's start time, provenance and the display showing it."""

    started: float | None = None
    info: dict | None = None
    handle = None


def _display_text(text: str, *, update: bool = False):
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(text)
        return None
    bundle = {"text/plain": text}
    if update and _ChapterClock.handle is not None:
        _ChapterClock.handle.update(bundle, raw=True)
        return _ChapterClock.handle
    return display(bundle, raw=True, display_id=True)


def show_provenance(profile: str | None = None) -> dict:
    """A chapter's first output: its provenance, and a wall time the last cell fills in (preface).

    In Jupyter this is an updatable display: :func:`finish_provenance` replaces the placeholder
    line with the measured wall time, and nbclient/JupyterLab store the updated text in the
    notebook, so the first output of a saved chapter shows how long the whole chapter ran.
    """
    info = provenance(profile)
    _ChapterClock.started = time.perf_counter()
    _ChapterClock.info = info
    _ChapterClock.handle = _display_text(
        format_provenance({**info, "wall time": "(filled in by the chapter's last cell)"})
    )
    return info


def finish_provenance() -> float:
    """Seconds since :func:`show_provenance`; writes them into its output (preface).

    Raises RuntimeError when :func:`show_provenance` has not run in this kernel.
    """
    if _ChapterClock.started is None or _ChapterClock.info is None:
        raise RuntimeError("call show_provenance() in the chapter's first cell first")
    seconds = time.perf_counter() - _ChapterClock.started
    text = format_provenance({**_ChapterClock.info, "wall time": f"{seconds:.1f} s"})
    if _ChapterClock.handle is not None:
        _display_text(text, update=True)
    print(f"chapter wall time: {seconds:.1f} s ({_ChapterClock.info['profile']} profile)")
    return seconds
