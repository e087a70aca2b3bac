"""Run folders: configuration, checkpoints and JSON written atomically (chapter 7).

A run folder holds ``run.json`` (configuration and provenance), ``history.json`` (loss and
validation curves), ``best.pt`` (best validation mIoU) and ``last.pt`` (for ``--resume``).
Checkpoints are loaded with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from bgnet_lite.data.io import DataError, atomic_write_bytes
from bgnet_lite.methods import create_model, get_method


def save_checkpoint(path: Path, payload: dict) -> None:
    """``torch.save`` to a temporary file, then rename (chapter 7)."""
    atomic_write_bytes(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """A checkpoint's tensors only (``weights_only=True``); a clear error when missing
    (chapter 7)."""
    if not Path(path).is_file():
        raise DataError(f"{path}: checkpoint not found; train first with `bgnet-lite train`")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # truncated zip, not a checkpoint, pickled code: all unusable
        raise DataError(f"{path}: cannot be read as a checkpoint ({type(error).__name__}); it "
                        "is truncated or not written by bgnet-lite: train again (or "
                        "`--resume` from an intact last.pt)") from error


def _json_safe(value):
    """NaN (e.g. precision with no predicted defect) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def save_json(path: Path, payload: dict) -> None:
    """Indented strict JSON (NaN -> null), written atomically (chapter 7)."""
    text = json.dumps(_json_safe(payload), indent=2, default=float)
    atomic_write_bytes(Path(path), lambda tmp: Path(tmp).write_text(text))


def read_run_info(run: str | Path) -> dict:
    """A run folder's ``run.json``; a clear error when RUN is not a run folder (chapter 7)."""
    info_path = Path(run) / "run.json"
    if not info_path.is_file():
        raise DataError(f"{info_path}: not found; RUN must be a folder written by "
                        "`bgnet-lite train`")
    return json.loads(info_path.read_text())


def build_run_model(info: dict) -> nn.Module:
    """The model a run trained, freshly initialised, without downloading weights (chapter 7)."""
    train_config = info["train_config"]
    options = dict(train_config["options"])
    entry = get_method(train_config["method"])
    if "weights" in {item.name for item in entry.option_fields()}:
        options["weights"] = "none"  # the checkpoint replaces every weight
    return create_model(train_config["method"], info["num_classes"], info["in_channels"],
                        **options)


def load_run(run: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """The best model of a run folder, in eval mode, and its ``run.json`` (chapter 7)."""
    info = read_run_info(run)
    model = build_run_model(info)
    model.load_state_dict(load_checkpoint(Path(run) / "best.pt", device)["model"])
    return model.to(device).eval(), info
