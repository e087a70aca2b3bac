"""Classical automated optical inspection: register, subtract, threshold, clean up (chapter 9,
"Beyond the paper").

Source: the golden-template comparison of industrial AOI, the baseline an inspection engineer
tries before any learning; built from OpenCV (registration in ``homography.py``, Gaussian
blur, elliptical opening and closing).  BGNet's paper does not compare against it, so nothing
here is fixed by the paper.

What we GUESSED: the difference is how far the sample leaves the warped template's tolerance
band (per channel, the template's minimum and maximum within 2 px, the AOI answer to residual
misalignment; tolerance 0 gives plain |sample - template|), maximum over channels, in [0, 1],
after matching the warped template's per-channel mean and standard deviation to the sample's
over the valid region (a global gain/offset: the cheapest answer to illumination changes); a
3 px Gaussian blur of the difference; the default threshold 0.2 and kernel 3 (for
an uncalibrated model); the calibration grid (quantiles ``QUANTILES`` of the validation
differences, kernels 1, 3, 5) and its criterion, the validation defect IoU (defect vs
background, every defect class counted as defect, pixels accumulated over the split as in
``metrics.ConfusionMatrix``).  Classes (K > 1, e.g. DeepPCB): differencing cannot tell defect
types apart, so every defect pixel gets ONE class, the most frequent defect class (by pixels)
of the validation split (buffer ``defect_class``, 1 before calibration); the background logit
is 0, that class's logit the scaled score, the other classes' a constant below both, so the
argmax is class 0 off-defect.

No trainable parameter: threshold, kernel size and defect class are buffers, kept in the
checkpoint.  Logits = ``LOGIT_SCALE`` * opening-then-closing of (difference - threshold), a
greyscale morphology with a flat kernel, which commutes with thresholding at 0, so
sigmoid > 0.5 exactly on the pixels of the binary open/close of (difference > threshold).
Pixels without a template source get logit -``LOGIT_SCALE`` (never defects).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from bgnet_lite.methods import common
from bgnet_lite.methods.registration.homography import (
    DETECTORS,
    Registration,
    register_pair,
    to_grey_uint8,
    warp_onto_sample,
)
from bgnet_lite.methods.registry import register_method

LOGIT_SCALE = 50.0  # a difference 0.1 above the threshold -> logit 5, sigmoid 0.993
QUANTILES = (0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995,
             0.998, 0.999)  # of the validation differences: the threshold grid of calibrate
KERNEL_SIZES = (1, 3, 5)  # the morphology kernels calibrate tries


@dataclass
class ClassicalAOIOptions:
    """Options of the classical AOI baseline (chapter 9)."""

    num_classes: int = 1  # logit channels K (1 = binary)
    in_channels: int = 3  # channels per image (1 or 3)
    detector: str = "sift"  # keypoints for the homography: "sift" | "orb" | "akaze"
    ecc: bool = True  # refine the RANSAC homography with ECC
    threshold: float = 0.2  # difference (0..1) above which a pixel is a defect; calibrated
    kernel_size: int = 3  # elliptical opening-then-closing kernel, px (1 = none); calibrated
    blur: int = 3  # Gaussian blur of the difference, odd px (1 = none)
    tolerance: int = 2  # px of residual misalignment forgiven (tolerance band; 0 = none)
    match_brightness: bool = True  # match the warped template's mean/std to the sample's


def open_close(image: np.ndarray, kernel_size: int) -> np.ndarray:
    """Opening (drops specks) then closing (fills pinholes) with an elliptical kernel
    (chapter 9).  image: [H, W] uint8 mask or float32 score; kernel 1 returns it unchanged."""
    if kernel_size <= 1:
        return image
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
    opened = cv2.morphologyEx(image, cv2.MORPH_OPEN, kernel)
    return cv2.morphologyEx(opened, cv2.MORPH_CLOSE, kernel)


def tolerance_band(warped: np.ndarray, tolerance: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the lowest and highest template value within ``tolerance`` px (an
    elliptical neighbourhood): a sample pixel inside [lower, upper] matches the template up to
    that misalignment (chapter 9).  warped: [H, W, C] float32; returns two [H, W, C]."""
    if tolerance <= 0:
        return warped, warped
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1,) * 2)
    lower = cv2.erode(warped, kernel).reshape(warped.shape)
    upper = cv2.dilate(warped, kernel).reshape(warped.shape)
    return lower, upper


def difference_map(template: np.ndarray, sample: np.ndarray, homography: np.ndarray,
                   blur: int = 3, match_brightness: bool = True,
                   tolerance: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """How far the sample leaves the registered template's tolerance band, max over channels,
    blurred, 0 where invalid (tolerance 0: |sample - template|), and the validity mask
    (chapter 9).  template, sample: [H, W, C] float32 in [0, 1].
    Returns difference [H, W] float32 in [0, 1] and valid [H, W] bool."""
    warped, valid = warp_onto_sample(template, homography)  # [H, W, C], [H, W]
    if match_brightness and valid.sum() > 1:
        gain = sample[valid].std(axis=0) / np.maximum(warped[valid].std(axis=0), 1e-6)  # [C]
        warped = (warped - warped[valid].mean(axis=0)) * gain + sample[valid].mean(axis=0)
    lower, upper = tolerance_band(warped.astype(np.float32), tolerance)  # [H, W, C] each
    outside = np.maximum(np.maximum(sample - upper, lower - sample), 0)  # [H, W, C]
    difference = outside.max(axis=2).astype(np.float32)  # [H, W]
    difference = np.clip(difference, 0.0, 1.0) * valid
    if blur > 1:
        difference = cv2.GaussianBlur(difference, (blur, blur), 0)
    return difference.astype(np.float32), valid


def defect_score(difference: np.ndarray, valid: np.ndarray, threshold: float,
                 kernel_size: int) -> np.ndarray:
    """Opened-then-closed (difference - threshold), -1 where invalid (chapter 9): positive
    exactly on the defect pixels.  difference, valid: [H, W]."""
    score = open_close(difference - np.float32(threshold), kernel_size)  # [H, W] float32
    return np.where(valid, score, np.float32(-1.0)).astype(np.float32)


def defect_mask(difference: np.ndarray, valid: np.ndarray, threshold: float,
                kernel_size: int) -> np.ndarray:
    """The binary prediction of ``defect_score`` > 0, computed on the mask (chapter 9)."""
    found = (difference > np.float32(threshold)).astype(np.uint8)
    return (open_close(found, kernel_size) > 0) & valid


def _split_defect_iou(predictions: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """Defect IoU with pixels accumulated over the split (-1 when undefined)."""
    true_pos = false_pos = false_neg = 0
    for found, target in zip(predictions, targets, strict=True):
        defect = target > 0
        true_pos += int((found & defect).sum())
        false_pos += int((found & ~defect).sum())
        false_neg += int((~found & defect).sum())
    union = true_pos + false_pos + false_neg
    return true_pos / union if union else -1.0


@register_method("classical-aoi", family="Beyond the paper",
                 citation="golden-template AOI: SIFT/ORB keypoints + RANSAC homography + ECC "
                          "(Evangelidis & Psarakis, TPAMI 2008), OpenCV",
                 summary="register the template (keypoints, RANSAC, ECC), subtract, threshold, "
                         "open/close; no learning", options=ClassicalAOIOptions)
class ClassicalAOI(nn.Module):
    """Registration + differencing without learning, behind the pair contract (chapter 9).

    The OpenCV work runs on the CPU in NumPy; logits come back on the input's device."""

    def __init__(self, options: ClassicalAOIOptions):
        super().__init__()
        if options.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {options.detector!r}")
        self.config = options
        self.in_channels, self.num_classes = options.in_channels, options.num_classes
        self.pretrained = False
        self.register_buffer("threshold", torch.tensor(float(options.threshold)))
        self.register_buffer("kernel_size", torch.tensor(int(options.kernel_size)))
        self.register_buffer("defect_class", torch.tensor(1))

    def difference_maps(self, template: torch.Tensor, sample: torch.Tensor
                        ) -> tuple[list[np.ndarray], list[np.ndarray], list[Registration]]:
        """Per pair: difference [H, W], validity [H, W] and the registration (chapter 9).
        template, sample: [N, C, H, W] in [0, 1]."""
        differences, valids, registrations = [], [], []
        template_np = template.detach().float().permute(0, 2, 3, 1).cpu().numpy()  # [N, H, W, C]
        sample_np = sample.detach().float().permute(0, 2, 3, 1).cpu().numpy()
        for template_image, sample_image in zip(template_np, sample_np, strict=True):
            registration = register_pair(to_grey_uint8(template_image),
                                         to_grey_uint8(sample_image),
                                         self.config.detector, self.config.ecc)
            difference, valid = difference_map(template_image, sample_image,
                                               registration.homography, self.config.blur,
                                               self.config.match_brightness,
                                               self.config.tolerance)
            differences.append(difference)
            valids.append(valid)
            registrations.append(registration)
        return differences, valids, registrations

    def forward(self, template: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Logits [N, K, H, W]: > 0 (K = 1) or argmax ``defect_class`` (K > 1) exactly on the
        predicted defect pixels (chapter 9)."""
        common.check_pair(template, sample, self.in_channels)
        # 1. register each template onto its sample and subtract (OpenCV, CPU)
        differences, valids, _ = self.difference_maps(template, sample)  # N x [H, W]
        # 2. threshold + opening/closing, as a signed score: > 0 exactly on defect pixels
        threshold, kernel = float(self.threshold), int(self.kernel_size)
        scores = np.stack([defect_score(difference, valid, threshold, kernel)
                           for difference, valid in zip(differences, valids, strict=True)])
        defect_logits = LOGIT_SCALE * torch.from_numpy(scores).to(template.device)  # [N, H, W]
        if self.num_classes == 1:
            return defect_logits[:, None]  # [N, 1, H, W]
        # 3. classes: background 0, one defect class the score, the others below both
        logits = torch.full((len(scores), self.num_classes, *scores.shape[1:]),
                            -2 * LOGIT_SCALE, device=template.device)  # [N, K, H, W]
        logits[:, 0] = 0.0
        logits[:, int(self.defect_class)] = defect_logits
        return logits

    @torch.no_grad()
    def calibrate(self, val_loader, device: torch.device) -> dict:
        """Choose threshold and kernel size maximising the validation defect IoU over the grid
        (``QUANTILES`` of the differences x ``KERNEL_SIZES``), and for K > 1 the most frequent
        defect class; stored in the buffers, returned for ``run.json`` (chapter 9)."""
        differences, valids, targets, statuses = [], [], [], Counter()
        for batch in val_loader:
            batch_diffs, batch_valids, registrations = self.difference_maps(
                batch["template"], batch["sample"])
            differences += batch_diffs
            valids += batch_valids
            targets += list(batch["mask"].cpu().long().numpy())  # N x [H, W]
            statuses.update(registration.status for registration in registrations)
        valid_values = np.concatenate([d[v] for d, v in zip(differences, valids, strict=True)])
        quantiles = (np.quantile(valid_values, QUANTILES) if valid_values.size
                     else [float(self.threshold)])  # nothing registered: keep the threshold
        thresholds = sorted({float(np.float32(max(value, 1e-4))) for value in quantiles})
        best = (-np.inf, float(self.threshold), int(self.kernel_size))
        for kernel in KERNEL_SIZES:
            for threshold in thresholds:
                found = [defect_mask(d, v, threshold, kernel)
                         for d, v in zip(differences, valids, strict=True)]
                iou = _split_defect_iou(found, targets)
                if iou > best[0]:
                    best = (iou, threshold, kernel)
        self.threshold.fill_(best[1])
        self.kernel_size.fill_(best[2])
        if self.num_classes > 1:
            counts = np.bincount(np.concatenate([t.ravel() for t in targets]),
                                 minlength=self.num_classes)[1:self.num_classes]
            if counts.sum() > 0:
                self.defect_class.fill_(int(counts.argmax()) + 1)
        return {"threshold": best[1], "kernel_size": best[2],
                "defect_class": int(self.defect_class), "criterion": "val defect IoU",
                "val_defect_iou": float(best[0]), "thresholds": thresholds,
                "kernel_sizes": list(KERNEL_SIZES), "registration": dict(statuses)}
