"""Figures shared by the chapters: pairs, differences, predictions (chapters 1, 5, 7)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

# one colour per class id (background transparent); DeepPCB has 6 defect classes
CLASS_COLOURS = np.array([
    [0, 0, 0], [255, 40, 40], [40, 200, 255], [255, 200, 0],
    [160, 90, 255], [40, 220, 90], [255, 120, 200],
], dtype=np.float32) / 255.0


def to_display(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[C, H, W]`` tensor or ``[H, W(, C)]`` array in 0..1 or 0..255 → ``[H, W, 3]`` float."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
        if image.ndim == 3:
            image = image.transpose(1, 2, 0)
    image = np.asarray(image, dtype=np.float32)
    if image.max() > 1.0:
        image = image / 255.0
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.clip(image, 0.0, 1.0)


def overlay_mask(image, mask, alpha: float = 0.55) -> np.ndarray:
    """Colour the pixels of ``mask`` (class ids; 0 = background) on top of ``image``."""
    rgb = to_display(image)
    mask = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask).astype(int)
    colours = CLASS_COLOURS[np.clip(mask, 0, len(CLASS_COLOURS) - 1)]
    where = (mask > 0)[..., None]
    return np.where(where, (1 - alpha) * rgb + alpha * colours, rgb)


# true positive, false positive, false negative: blue / orange / magenta stay apart for the
# common colour-vision deficiencies and against the gold and grey of the boards
ERROR_COLOURS = {"true positive": (0.10, 0.45, 1.00), "false positive": (1.00, 0.55, 0.00),
                 "false negative": (0.95, 0.05, 0.75)}


def _as_bool(mask) -> np.ndarray:
    return np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask) > 0


def error_overlay(image, prediction, truth, alpha: float = 0.45) -> np.ndarray:
    """The prediction against the truth on ``image`` (chapter 9): true positives, false
    positives and false negatives (any defect class) filled in the three ``ERROR_COLOURS``,
    each region outlined in its colour so small ones stay visible.  Returns [H, W, 3]."""
    from scipy.ndimage import binary_erosion

    rgb = to_display(image).copy()
    predicted, true = _as_bool(prediction), _as_bool(truth)
    regions = {"true positive": predicted & true, "false positive": predicted & ~true,
               "false negative": ~predicted & true}
    for name, region in regions.items():
        colour = np.array(ERROR_COLOURS[name], dtype=np.float32)
        rgb[region] = (1 - alpha) * rgb[region] + alpha * colour
        outline = region & ~binary_erosion(region)
        rgb[outline] = colour
    return rgb


def error_legend(axis_or_figure, **kwargs) -> None:
    """A legend naming the three colours of ``error_overlay`` (chapter 9)."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colour, label=name) for name, colour in ERROR_COLOURS.items()]
    axis_or_figure.legend(handles=handles, **{"loc": "lower center", "ncol": 3,
                                               "fontsize": 10, **kwargs})


def abs_difference(template, sample) -> np.ndarray:
    """|sample − template| averaged over colour channels, ``[H, W]`` in 0..1."""
    return np.abs(to_display(sample) - to_display(template)).mean(-1)


def _short(title: str, limit: int = 28) -> str:
    """Panel titles stay on one line (DeepPCB pairs can list six class names)."""
    return title if len(title) <= limit else title[: limit - 1] + "…"


def show_pairs(dataset, indices=(0, 1, 2), *, titles: bool = True, cell: float = 2.4):
    """The book's first figure (chapter 1): template / sample / mask overlay / |sample − template|
    for a few pairs of any :class:`~bgnet_lite.data.folder.PairDataset`.  Returns the figure."""
    indices = list(indices)
    figure, axes = plt.subplots(len(indices), 4, figsize=(4 * cell, len(indices) * cell),
                                squeeze=False)
    for row, index in enumerate(indices):
        item = dataset[index]
        meta = item["meta"]
        panels = [
            (to_display(item["template"]), f"template (batch {meta.get('batch', '-')})"),
            (to_display(item["sample"]), f"sample {meta.get('name', index)}"),
            (overlay_mask(item["sample"], item["mask"]), _short(f"mask: {meta.get('defect', '')}")),
            (abs_difference(item["template"], item["sample"]), "|sample − template|"),
        ]
        for axis, (picture, title) in zip(axes[row], panels, strict=True):
            axis.imshow(picture, cmap="magma" if picture.ndim == 2 else None, vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if titles:
                axis.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure
