"""Class-activation maps of BGNet's features with grad-cam (the paper's Figures 4-5).

grad-cam (``pytorch_grad_cam``) hooks one module and calls the model with one input tensor.
BGNet's shared backbone sees template and sample in one call, so a hook there would mix the
two; the model's identity ``taps`` (``model.taps["template_8"]``, ``["sample_8"]``,
``["difference_8"]``, every stride) are each called once per forward, and
:class:`PairAsOneInput` hands grad-cam the pair as one ``[N, 2C, H, W]`` tensor.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
from torch import nn


class PairAsOneInput(nn.Module):
    """``model(template, sample)`` as ``wrapper(pair)`` with ``pair = cat([template, sample],
    dim=1)``: the one-input call grad-cam makes."""

    def __init__(self, model: nn.Module, channels: int):
        super().__init__()
        self.model, self.channels = model, channels

    def forward(self, pair: torch.Tensor) -> torch.Tensor:  # [N, 2C, H, W] -> [N, K, H, W]
        return self.model(pair[:, :self.channels], pair[:, self.channels:])


def feature_cams(model: nn.Module, template: torch.Tensor, sample: torch.Tensor,
                 target_mask: np.ndarray, taps=("template_8", "sample_8", "difference_8"),
                 category: int = 0) -> dict[str, np.ndarray]:
    """Grad-CAM of each tap for the defect score inside ``target_mask`` (figure 4).

    template, sample: ``[1, C, H, W]``; target_mask ``[H, W]`` (the pixels whose defect logit
    is explained: the ground truth, or the prediction); category: the logit channel (0 for a
    binary model's single defect logit).  Returns ``{tap: [H, W] map in 0..1}``, upsampled to
    the image by grad-cam."""
    was_training = model.training
    model.eval()
    wrapper = PairAsOneInput(model, template.shape[1])
    pair = torch.cat([template, sample], dim=1)
    targets = [SemanticSegmentationTarget(category, np.asarray(target_mask, dtype=np.float32))]
    cams = {}
    try:
        for tap in taps:
            with GradCAM(model=wrapper, target_layers=[model.taps[tap]]) as cam:
                cams[tap] = cam(input_tensor=pair, targets=targets)[0]  # [H, W]
    finally:
        model.train(was_training)
    return cams


def mass_inside(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of a map's total inside ``mask`` (figure 4's measure: does the map sit on the
    defect?); NaN for an all-zero map."""
    total = float(cam.sum())
    return float(cam[np.asarray(mask, dtype=bool)].sum()) / total if total > 0 else float("nan")
