"""Segmentation metrics of the paper (eq. 17-21) from one confusion matrix per split (chapter 7).

The matrix is accumulated over every pixel of a split (``update`` once per batch) and the
metrics are computed once at the end, so they are pixel-level over the whole split, not a
mean of per-image scores.

Undefined values: a ratio whose denominator is 0 (e.g. the IoU of a class that appears in
neither target nor prediction, or precision when nothing is predicted as defect) is NaN, and
means over classes (miou, macc, ...) skip NaN entries; a mean with no defined entry is NaN.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def logits_to_prediction(logits: torch.Tensor) -> torch.Tensor:
    """Logits [N, K, H, W] -> class map [N, H, W] long (chapter 7).

    Binary (K = 1): 1 where sigmoid(logit) > 0.5, i.e. logit > 0. Multi-class: argmax.
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be [N, K, H, W], got {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def defect_scores(logits: torch.Tensor) -> torch.Tensor:
    """The probability that a pixel is a defect of any class, [N, H, W] (chapter 7):
    sigmoid of the one logit, else 1 - the softmax probability of the background (class 0)."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return 1 - torch.softmax(logits, dim=1)[:, 0]


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the precision-recall curve of defect scores against 0/1 truth (chapter 7):
    sum over distinct thresholds of (R_n - R_(n-1)) P_n, tied scores counted together (the
    definition of ``sklearn.metrics.average_precision_score``).  NaN without a true defect."""
    scores, truth = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(truth).ravel() > 0
    if not truth.any():
        return math.nan
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], truth[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(hits) - 1]
    true_positives = np.cumsum(hits)[last_of_each_score]
    precision = true_positives / (last_of_each_score + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else math.nan


def _nanmean(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else math.nan


class ConfusionMatrix:
    """Pixel confusion matrix over a split: rows = target class, columns = prediction (ch. 7).

    num_classes as in ``BGNetConfig``: 1 = binary (classes 0 background, 1 defect, so the
    matrix is 2 x 2), K >= 2 = K classes with 0 = background.
    """

    def __init__(self, num_classes: int):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = max(num_classes, 2)
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def reset(self) -> None:
        """Forget all counts (chapter 7)."""
        self.matrix.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add the pixels of one batch: pred, target [N, H, W] integer class ids (chapter 7)."""
        pred = torch.as_tensor(pred)
        target = torch.as_tensor(target)
        if pred.shape != target.shape:
            raise ValueError(
                f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
            )
        if pred.is_floating_point() or target.is_floating_point():
            raise ValueError(
                "pred and target must hold integer class ids (use logits_to_prediction)"
            )
        pred = pred.long().flatten()
        target = target.long().flatten()
        count = self.num_classes
        for name, values in (("pred", pred), ("target", target)):
            if values.numel() and (values.min() < 0 or values.max() >= count):
                raise ValueError(f"{name} class ids must be in [0, {count})")
        pairs = torch.bincount(target * count + pred, minlength=count * count)  # [K * K]
        self.matrix += pairs.reshape(count, count).cpu()

    def compute(self) -> dict:
        """All metrics of the paper from the accumulated counts (chapter 7, eq. 17-21).

        Defect-vs-background (every class != 0 is "defect"): precision, recall, f2 (F-beta,
        beta = 2, = 5 TP / (5 TP + 4 FN + FP)), defect_iou. Per class: iou, accuracy
        (= recall of that class). miou / macc: mean over ALL classes incl. background (eq.
        20-21, "N = total number of classes"); miou_defect / macc_defect: over defect classes
        only. pixel_accuracy: share of pixels classified correctly.
        """
        matrix = self.matrix.double().numpy()
        true_pos = np.diag(matrix)  # [K]
        false_pos = matrix.sum(axis=0) - true_pos  # predicted as class, is another
        false_neg = matrix.sum(axis=1) - true_pos  # is class, predicted as another
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(
                true_pos + false_pos + false_neg > 0,
                true_pos / (true_pos + false_pos + false_neg), np.nan,
            )
            accuracy = np.where(true_pos + false_neg > 0, true_pos / (true_pos + false_neg), np.nan)
        defect_tp = matrix[1:, 1:].sum()  # a defect pixel predicted as any defect class
        defect_fp = matrix[0, 1:].sum()
        defect_fn = matrix[1:, 0].sum()
        return {
            "precision": _ratio(defect_tp, defect_tp + defect_fp),
            "recall": _ratio(defect_tp, defect_tp + defect_fn),
            "f2": _ratio(5 * defect_tp, 5 * defect_tp + 4 * defect_fn + defect_fp),
            "defect_iou": _ratio(defect_tp, defect_tp + defect_fp + defect_fn),
            "iou": [float(value) for value in iou],
            "miou": _nanmean(iou),
            "miou_defect": _nanmean(iou[1:]),
            "accuracy": [float(value) for value in accuracy],
            "macc": _nanmean(accuracy),
            "macc_defect": _nanmean(accuracy[1:]),
            "pixel_accuracy": _ratio(true_pos.sum(), matrix.sum()),
        }


def matching_accuracy(
    sample_to_template: torch.Tensor, gt_cells: torch.Tensor, feat_w: int
) -> dict[str, float | int]:
    """How many matches land within one cell of the ground truth (chapter 5).

    sample_to_template and gt_cells ``[N, S]`` (-1 = none), template and sample maps of width
    feat_w.  Returns matches (all MNN matches), evaluated (matches whose ground truth is defined),
    within_one_cell (of those, Chebyshev distance <= 1 cell) and share_within_one_cell
    (within / evaluated; NaN when nothing could be evaluated).
    """
    if sample_to_template.shape != gt_cells.shape:
        raise ValueError(
            f"shapes differ: sample_to_template {tuple(sample_to_template.shape)} vs gt_cells "
            f"{tuple(gt_cells.shape)}"
        )
    if feat_w <= 0:
        raise ValueError(f"feat_w must be positive, got {feat_w}")
    matched = sample_to_template >= 0
    evaluated = matched & (gt_cells >= 0)
    dx = (sample_to_template % feat_w - gt_cells % feat_w).abs()
    dy = (
        torch.div(sample_to_template, feat_w, rounding_mode="floor")
        - torch.div(gt_cells, feat_w, rounding_mode="floor")
    ).abs()
    within = evaluated & (torch.maximum(dx, dy) <= 1)
    n_evaluated = int(evaluated.sum())
    n_within = int(within.sum())
    return {
        "matches": int(matched.sum()),
        "evaluated": n_evaluated,
        "within_one_cell": n_within,
        "share_within_one_cell": n_within / n_evaluated if n_evaluated else float("nan"),
    }


def parameter_size_mb(model: torch.nn.Module) -> float:
    """Parameter size in MiB: number of parameters x 4 bytes (float32) / 2**20 (chapter 7).

    Buffers (BatchNorm running statistics) are not counted. The paper's Table 3 says "MB"
    without defining it; 2**20 bytes is assumed.
    """
    return sum(parameter.numel() for parameter in model.parameters()) * 4 / 2**20
