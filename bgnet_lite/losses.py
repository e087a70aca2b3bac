"""Losses: focal loss for the segmentation (eq. 16) and the coarse matching loss (chapter 6).

The paper trains with focal loss only (Sec. 3.6, gamma = 2, no alpha weighting). The matching
loss is the optional LoFTR-style supervision of the match probabilities, usable when the
dataset provides ground-truth correspondences (the ``flow`` column).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, reduction: str = "mean",
    alpha: float | None = None,
) -> torch.Tensor:
    """Focal loss FL = -(1 - p_t)^gamma log p_t, eq. 16 (chapter 6).

    Binary: logits [N, 1, H, W], target [N, H, W] or [N, 1, H, W] with values 0/1 (float or
    integer); p = sigmoid(logit). Multi-class: logits [N, K, H, W] (K >= 2), target long
    [N, H, W] with class ids in [0, K); p = softmax over classes. gamma = 0 gives plain
    cross-entropy. reduction "mean" (over pixels), "sum" or "none" (per pixel [N, H, W]).

    ``alpha=None`` is the paper (no class weighting). A float in (0, 1) is Lin et al.'s
    alpha-balanced form, -alpha_t (1 - p_t)^gamma log p_t with alpha_t = alpha on defect pixels
    (any class but 0) and 1 - alpha on background; ``torchvision.ops.sigmoid_focal_loss`` uses
    the same convention. It is an option behind a flag because on our data defects cover
    ~0.3 % of the pixels and, within a laptop budget, the unweighted loss keeps most defect
    probabilities below 0.5 even where it ranks the pixels well (chapter 7,
    ``results/investigation-cpu.json``).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if alpha is not None and not 0 < alpha < 1:
        raise ValueError(f"alpha must be None (off) or in (0, 1), got {alpha}")
    if logits.dim() != 4:
        raise ValueError(f"logits must be [N, K, H, W], got {tuple(logits.shape)}")
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]  # [N, H, W]
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"target must be [N, H, W] = {tuple(logits.shape[:1] + logits.shape[2:])} for "
            f"logits {tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    num_classes = logits.shape[1]
    if num_classes == 1:
        if ((target != 0) & (target != 1)).any():
            raise ValueError("binary focal loss needs a target of 0/1 values")
        logits = logits[:, 0]  # [N, H, W]
        target = target.to(logits.dtype)
        # log p_t = -BCE; computed from logits for numerical stability
        log_p_t = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * target + (1 - p) * (1 - target)  # [N, H, W]
    else:
        if target.dtype not in (torch.int64, torch.int32, torch.uint8, torch.int16):
            raise ValueError(f"multi-class target must hold integer class ids, got {target.dtype}")
        target = target.long()
        if (target < 0).any() or (target >= num_classes).any():
            raise ValueError(f"target class ids must be in [0, {num_classes})")
        log_probs = F.log_softmax(logits, dim=1)  # [N, K, H, W]
        log_p_t = log_probs.gather(1, target[:, None])[:, 0]  # [N, H, W]
        p_t = log_p_t.exp()
    loss = -((1 - p_t).clamp(min=0) ** gamma) * log_p_t  # [N, H, W]
    if alpha is not None:
        loss = torch.where(target > 0, alpha * loss, (1 - alpha) * loss)
    return _reduce(loss, reduction)


def matching_loss(
    match_prob: torch.Tensor, gt_cells: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Mean over sample cells b with ground truth of -log P(gt_a(b), b) (chapter 6).

    match_prob [N, L, S] (dual-softmax probabilities, template rows); gt_cells [N, S] long,
    the true template cell of each sample cell or -1 where undefined. This is LoFTR's coarse
    supervision restricted to the positive term; the paper has no matching loss (it trains
    the matching only through the segmentation loss). Returns 0 (still connected to the
    graph) when no cell has ground truth.
    """
    if match_prob.dim() != 3:
        raise ValueError(f"match_prob must be [N, L, S], got {tuple(match_prob.shape)}")
    num_template = match_prob.shape[1]
    if gt_cells.shape != (match_prob.shape[0], match_prob.shape[2]):
        raise ValueError(
            f"gt_cells must be [N, S] = {(match_prob.shape[0], match_prob.shape[2])}, "
            f"got {tuple(gt_cells.shape)}"
        )
    gt_cells = gt_cells.long()
    if (gt_cells >= num_template).any():
        raise ValueError(f"gt_cells hold template cells in [0, {num_template}) or -1")
    defined = gt_cells >= 0  # [N, S]
    if not defined.any():
        return match_prob.sum() * 0.0
    prob_of_truth = match_prob.gather(1, gt_cells.clamp(min=0)[:, None])[:, 0]  # [N, S]
    return -torch.log(prob_of_truth[defined] + eps).mean()
