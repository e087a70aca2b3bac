"""Lovász losses: the convex Lovász extension of the Jaccard (IoU) loss, binary hinge form and
multi-class softmax form (DSSSNet's loss term; chapter 9).

Source: Berman, Rannen Triki, Blaschko, "The Lovász-Softmax loss: A tractable surrogate for the
optimization of the intersection-over-union measure in neural networks", CVPR 2018.
Hand-written so that the tests can check it against the extension's definition by brute force
(``smp.losses.LovaszLoss`` implements the same losses).  For errors ``m`` sorted in
decreasing order, the extension is ``sum_i m_i (J(first i) - J(first i - 1))`` where ``J`` is
the Jaccard loss of the set of the i worst pixels counted as mispredicted.
"""

from __future__ import annotations

import torch


def jaccard_increments(foreground_sorted: torch.Tensor) -> torch.Tensor:
    """``J(first i) - J(first i - 1)`` for pixels sorted by decreasing error, where
    ``J(M) = |M| / |F u M|`` is the Jaccard loss when the pixels M are mispredicted and F is
    the ground-truth foreground; foreground_sorted [P] 0/1 (chapter 9)."""
    foreground_sorted = foreground_sorted.float()
    total = foreground_sorted.sum()
    # mispredicting the first i pixels: IoU = (F minus those) / (F plus those of background)
    intersection = total - foreground_sorted.cumsum(0)
    union = total + (1 - foreground_sorted).cumsum(0)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_extension(errors: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """The Lovász extension of the Jaccard loss at the error vector ``errors`` [P] >= 0, for
    the ground-truth foreground [P] 0/1 (chapter 9)."""
    errors_sorted, order = torch.sort(errors, descending=True)
    return torch.dot(errors_sorted, jaccard_increments(foreground[order]))


def lovasz_hinge(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary Lovász hinge, averaged over images: logits [N, 1, H, W] or [N, H, W], target
    0/1 of the same pixels (chapter 9)."""
    logits, target = logits.reshape(logits.shape[0], -1), target.reshape(target.shape[0], -1)
    losses = []
    for image_logits, image_target in zip(logits, target, strict=True):
        signs = 2 * image_target.float() - 1
        hinge = torch.relu(1 - image_logits * signs)  # margin errors [P]
        losses.append(lovasz_extension(hinge, image_target))
    return torch.stack(losses).mean()


def lovasz_softmax(probabilities: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lovász-softmax over the batch, averaged over the classes present in ``target``:
    probabilities [N, K, H, W] (softmax), target long [N, H, W] class ids (chapter 9)."""
    num_classes = probabilities.shape[1]
    flat = probabilities.permute(0, 2, 3, 1).reshape(-1, num_classes)  # [P, K]
    labels = target.reshape(-1)
    losses = []
    for index in range(num_classes):
        foreground = (labels == index).float()
        if foreground.sum() == 0:
            continue
        losses.append(lovasz_extension((foreground - flat[:, index]).abs(), foreground))
    if not losses:  # no pixels at all
        return probabilities.sum() * 0
    return torch.stack(losses).mean()
