"""pyproject.toml and environment.yml declare the same dependencies; the CLI is installed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r): r.replace(" ", "") for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared.update({_name(r): r.replace(" ", "") for r in extra})
    env_lines = (ROOT / "environment.yml").read_text().splitlines()
    pip_entries = [line.strip()[2:].strip() for line in env_lines
                   if line.startswith("      - ")]
    listed = {_name(r): r.replace(" ", "") for r in pip_entries if not r.startswith("-e")}
    assert listed == declared


def test_required_dependencies_present():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    everything = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        everything |= {_name(r) for r in extra}
    for needed in ("torch", "torchvision", "numpy", "matplotlib", "pillow", "tqdm", "ipywidgets",
                   "grad-cam", "jupyter-book", "nbval", "pytest"):
        assert needed in everything, needed
    book = next(r for r in project["optional-dependencies"]["book"] if _name(r) == "jupyter-book")
    assert "<1.1" in book  # Jupyter Book 2 cannot build offline
    assert project["scripts"]["bgnet-lite"] == "bgnet_lite.cli:main"
