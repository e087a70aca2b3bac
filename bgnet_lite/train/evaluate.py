"""Evaluation of any registered method over a whole split (chapter 7).

Metrics come from one confusion matrix accumulated over the split (eq. 17-21,
``bgnet_lite.metrics``).  A model with ``forward_details`` that reports "matches" also gets the
share of its matches within one cell of the ground truth, where the dataset has flows.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from bgnet_lite.data.folder import PairDataset, collate_pairs, require_valid_dataset
from bgnet_lite.data.io import DataError
from bgnet_lite.metrics import (
    ConfusionMatrix,
    average_precision,
    defect_scores,
    logits_to_prediction,
    matching_accuracy,
    parameter_size_mb,
)
from bgnet_lite.provenance import provenance
from bgnet_lite.supervision import flow_to_cell_targets
from bgnet_lite.train.runs import load_run, save_json


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA when available, else the CPU (chapter 7)."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_device(batch: dict, device: torch.device) -> dict:
    """Every tensor of a batch on ``device`` (chapter 7)."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def _forward(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """Logits and, for a model that has them, its details (matches)."""
    if hasattr(model, "forward_details"):
        details = model.forward_details(batch["template"], batch["sample"])
        return details["logits"], details
    return model(batch["template"], batch["sample"]), {}


def _count_matches(totals: dict, details: dict, batch: dict) -> None:
    image_hw = batch["sample"].shape[-2:]
    for stride, result in details.get("matches", {}).items():
        feat_hw = (image_hw[0] // stride, image_hw[1] // stride)
        gt_cells = flow_to_cell_targets(batch["flow"], image_hw, feat_hw)
        counts = matching_accuracy(result.sample_to_template, gt_cells, feat_hw[1])
        total = totals.setdefault(stride, {"matches": 0, "evaluated": 0, "within_one_cell": 0,
                                           "cells": feat_hw[0] * feat_hw[1]})
        for key in ("matches", "evaluated", "within_one_cell"):
            total[key] += int(counts[key])


@torch.no_grad()
def evaluate(model, loader, device: torch.device, num_classes: int,
             progress: bool = False) -> dict:
    """Metrics over a whole split (eq. 17-21), the average precision of the defect scores
    (``defect_ap``: how well the model ranks defect pixels, whatever its threshold) and, for a
    matching model, the share of its matches within one cell of the ground truth (chapter 7)."""
    was_training = model.training
    model.eval()
    confusion = ConfusionMatrix(num_classes)
    match_totals: dict[int, dict[str, int]] = {}
    scores, truths = [], []  # every pixel's defect probability, for the average precision
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        batch = to_device(batch, device)
        logits, details = _forward(model, batch)
        confusion.update(logits_to_prediction(logits), batch["mask"])
        scores.append(defect_scores(logits).float().cpu().numpy().ravel())
        truths.append((batch["mask"] > 0).cpu().numpy().ravel())
        _count_matches(match_totals, details, batch)
    metrics = confusion.compute()
    metrics["defect_ap"] = average_precision(np.concatenate(scores), np.concatenate(truths))
    for stride, total in match_totals.items():
        metrics[f"match_within_one_cell_1_{stride}"] = (
            total["within_one_cell"] / total["evaluated"] if total["evaluated"] else float("nan"))
        metrics[f"matches_per_pair_1_{stride}"] = total["matches"] / max(len(loader.dataset), 1)
        metrics[f"match_cells_1_{stride}"] = total["cells"]
    model.train(was_training)
    return metrics


@torch.no_grad()
def defect_iou_by_type(model, loader, device: torch.device | str = "cpu") -> dict:
    """Defect IoU per value of the dataset's ``defect`` column, over a whole split (chapter 7).

    One confusion matrix per type, accumulated over all its pairs like :func:`evaluate`'s;
    its ``defect_iou`` counts every class but the background as "defect".  Pairs without a
    ``defect`` column are counted as "unlabelled".  Returns ``{type: {"pairs",
    "truth_px_per_pair", "defect_iou"}}`` sorted by type; the IoU is NaN for a type with no
    defect pixel predicted or true.
    """
    was_training = model.training
    model.eval()
    confusions: dict[str, ConfusionMatrix] = {}
    pairs: dict[str, int] = {}
    for batch in loader:
        batch = to_device(batch, torch.device(device))
        logits = model(batch["template"], batch["sample"])  # [N, K, H, W]
        prediction = logits_to_prediction(logits)
        for index, meta in enumerate(batch["meta"]):
            kind = meta.get("defect") or "unlabelled"
            confusion = confusions.setdefault(kind, ConfusionMatrix(logits.shape[1]))
            confusion.update(prediction[index:index + 1], batch["mask"][index:index + 1])
            pairs[kind] = pairs.get(kind, 0) + 1
    model.train(was_training)
    return {kind: {"pairs": pairs[kind],
                   "truth_px_per_pair": int(confusions[kind].matrix[1:].sum()) / pairs[kind],
                   "defect_iou": confusions[kind].compute()["defect_iou"]}
            for kind in sorted(confusions)}


def evaluate_run(run: str | Path, data: str | Path, *, split: str = "test",
                 json_path: str | Path | None = None, size: int | None = None,
                 device: str | None = None, per_type: bool = False,
                 pairs: int | None = None) -> dict:
    """Metrics of a run's best checkpoint on a split, with provenance; optionally written to
    JSON; ``per_type`` adds ``defect_iou_by_type`` (chapter 7).  ``pairs``: only that many pairs,
    evenly spaced over the split from its first to its last (chapter 14 compares seen and unseen
    batches on equal numbers of pairs)."""
    started = time.time()
    require_valid_dataset(data, split=split)  # every file of the split, before loading a model
    torch_device = pick_device(device)
    model, info = load_run(run, torch_device)
    train_config = info["train_config"]
    dataset = PairDataset(data, split, size=size or train_config["size"])
    if len(dataset) == 0:
        raise DataError(f"{data}: the {split} split is empty")
    if pairs is not None:
        if pairs < 1:
            raise ValueError(f"pairs must be at least 1, got {pairs}")
        if pairs < len(dataset):
            chosen = np.linspace(0, len(dataset) - 1, pairs).round().astype(int)
            dataset = Subset(dataset, chosen.tolist())
    loader = DataLoader(dataset, batch_size=train_config["batch_size"], collate_fn=collate_pairs)
    metrics = evaluate(model, loader, torch_device, info["num_classes"])
    if per_type:
        metrics["defect_iou_by_type"] = defect_iou_by_type(model, loader, torch_device)
    metrics.update(params_mb=parameter_size_mb(model), split=split, pairs=len(dataset),
                   method=train_config["method"], options=train_config["options"],
                   profile=train_config["profile"], seed=train_config["seed"],
                   pretrained=info.get("pretrained"),
                   initialisation=info.get("initialisation"), run=str(run), data=str(data),
                   train_wall_time_s=info.get("wall_time_s"),
                   eval_wall_time_s=round(time.time() - started, 2),
                   provenance=provenance(train_config["profile"]))
    if json_path:
        save_json(Path(json_path), metrics)
    return metrics


def format_metrics(metrics: dict) -> str:
    """The headline metrics as aligned lines (chapter 7)."""
    keys = ["precision", "recall", "f2", "miou", "miou_defect", "defect_iou", "macc",
            "params_mb"] + sorted(k for k in metrics if k.startswith("match_within"))
    lines = [f"{metrics.get('method', '')} on {metrics.get('split', '')} "
             f"({metrics.get('pairs', '?')} pairs)"]
    lines += [f"  {key:<28} {metrics[key]:.4f}" for key in keys if key in metrics]
    return "\n".join(lines)
