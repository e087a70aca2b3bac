"""Subtraction of the matched template feature, eq. 8, hard and soft (chapter 5, "Matching").

After matching (``matching.py``), each matched sample cell subtracts the feature of its template
cell, so background that moved cancels and a defect stays; an unmatched cell keeps its own
feature.  ``soft_matched_subtraction`` is the differentiable deviation behind BGNet's
``soft_match`` flag.
"""

from __future__ import annotations

import torch


def matched_subtraction(
    sample_feats: torch.Tensor, template_feats: torch.Tensor, sample_to_template: torch.Tensor
) -> torch.Tensor:
    """Eq. 8: ``f^S_b - f^T_m(b)`` where ``b`` is matched, ``f^S_b`` where not (chapter 5).

    sample_feats ``[N, C, H, W]``, template_feats ``[N, C, Ht, Wt]``, sample_to_template
    ``[N, H*W]`` (-1 = unmatched) -> ``[N, C, H, W]``.  Gradients reach both feature maps
    through the gathered values; the discrete matching itself has no gradient.
    """
    if sample_feats.dim() != 4 or template_feats.dim() != 4:
        raise ValueError(
            "matched_subtraction expects [N, C, H, W] feature maps, got "
            f"{tuple(sample_feats.shape)} and {tuple(template_feats.shape)}"
        )
    batch, channels, height, width = sample_feats.shape
    if template_feats.shape[:2] != (batch, channels):
        raise ValueError(
            f"template {tuple(template_feats.shape)} and sample {tuple(sample_feats.shape)} "
            "must agree in batch and channels"
        )
    if sample_to_template.shape != (batch, height * width):
        raise ValueError(
            f"sample_to_template must be [N, H*W] = [{batch}, {height * width}], got "
            f"{tuple(sample_to_template.shape)}"
        )
    template_flat = template_feats.flatten(2)  # [N, C, L]
    if sample_to_template.numel() and int(sample_to_template.max()) >= template_flat.shape[2]:
        raise ValueError(
            f"sample_to_template points past the {template_flat.shape[2]} template cells"
        )
    sample_flat = sample_feats.flatten(2)  # [N, C, S]
    matched = sample_to_template >= 0  # [N, S]
    index = sample_to_template.clamp(min=0)[:, None, :].expand(-1, channels, -1)  # [N, C, S]
    gathered = template_flat.gather(2, index)  # [N, C, S] f^T_m(b)
    difference = torch.where(matched[:, None, :], sample_flat - gathered, sample_flat)
    return difference.view(batch, channels, height, width)


def soft_matched_subtraction(
    sample_feats: torch.Tensor, template_feats: torch.Tensor, match_prob: torch.Tensor
) -> torch.Tensor:
    """Differentiable ablation of eq. 8: ``f^S_b - sum_a P(a, b) f^T_a`` (chapter 5).

    Used when the network's ``soft_match`` flag is on (a deviation from the paper's hard eq. 8).
    sample_feats ``[N, C, H, W]``, template_feats ``[N, C, Ht, Wt]``, match_prob ``[N, L, S]``
    with ``L = Ht * Wt``, ``S = H * W`` -> ``[N, C, H, W]``.
    """
    if sample_feats.dim() != 4 or template_feats.dim() != 4 or match_prob.dim() != 3:
        raise ValueError("expected [N, C, H, W] feature maps and match_prob [N, L, S]")
    batch, channels, height, width = sample_feats.shape
    template_flat = template_feats.flatten(2)  # [N, C, L]
    expected = (batch, template_flat.shape[2], height * width)
    if template_feats.shape[:2] != (batch, channels) or match_prob.shape != expected:
        raise ValueError(
            f"match_prob must be [N, L, S] = {list(expected)} for template "
            f"{tuple(template_feats.shape)} and sample {tuple(sample_feats.shape)}, got "
            f"{tuple(match_prob.shape)}"
        )
    expected_template = torch.bmm(template_flat, match_prob)  # [N, C, S]
    return (sample_feats.flatten(2) - expected_template).view(batch, channels, height, width)
