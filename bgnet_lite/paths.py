"""Where generated data and training runs go (preface, chapter 7).

Everything the package writes lands under one *home* folder: ``$BGNET_HOME`` when set, else the
current directory, never the folder the package is installed in.  ``data/`` holds generated
datasets, ``runs/`` training runs; both are git-ignored in this repository.  The book's
``make`` targets set ``BGNET_HOME`` to the repository root, so chapters executed there and the
command line share one cache.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """``$BGNET_HOME`` or the current directory (preface)."""
    return Path(os.environ.get("BGNET_HOME") or Path.cwd())


def data_root() -> Path:
    """Generated datasets: ``<home>/data`` (chapter 1)."""
    return home() / "data"


def runs_root() -> Path:
    """Training runs the chapters cache: ``<home>/runs`` (chapter 7)."""
    return home() / "runs"


def relative_to_home(path: str | Path) -> str:
    """A path under the home folder as written relative to it; elsewhere its name alone, so
    that results name no machine's folders (chapters 7 and 11)."""
    path, base = Path(path).resolve(), home().resolve()
    return str(path.relative_to(base)) if path.is_relative_to(base) else path.name
