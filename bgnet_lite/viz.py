"""Figures shared by the chapters: pairs, differences, predictions (chapters 1, 5, 7)."""

from __future__ import annotations

import io

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
# Figure 4's match lines: within one cell of the ground truth, or elsewhere
MATCH_COLOURS = {"within one cell": (0.0, 1.0, 0.0), "elsewhere": (1.0, 0.0, 0.0)}


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


def figure_jpeg(figure, *, quality: int = 85) -> bytes:
    """The figure as JPEG bytes, rendered as the notebook renders it (figure dpi, tight box), and
    closed (chapter 14). Grad-CAM heat maps are photographic: PNG stores them at several times
    the size of a JPEG that looks the same, and a chapter of them would weigh several MB."""
    buffer = io.BytesIO()
    # full-resolution colour (no 4:2:0 subsampling), so thin coloured outlines stay their colour
    figure.savefig(buffer, format="jpeg", bbox_inches="tight",
                   pil_kwargs={"quality": quality, "subsampling": 0})
    plt.close(figure)
    return buffer.getvalue()


def show_as_jpeg(figure, *, quality: int = 85) -> None:
    """Display ``figure`` in the notebook as a JPEG instead of the inline PNG (chapter 14).
    Keep PNG for figures whose meaning is in exact colours (``error_overlay``)."""
    from IPython.display import Image, display

    display(Image(data=figure_jpeg(figure, quality=quality), format="jpeg"))


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


def within_one_cell(cells: np.ndarray, truth: np.ndarray, width: int) -> np.ndarray:
    """Which matched template cells lie within one cell (8-neighbourhood) of the true ones;
    False where the truth is undefined (-1) (chapters 5 and 14)."""
    cells, truth = np.asarray(cells), np.asarray(truth)
    near = (np.abs(cells // width - truth // width) <= 1) & (np.abs(cells % width - truth % width)
                                                              <= 1)
    return near & (truth >= 0) & (cells >= 0)


def draw_match_lines(axis, template, sample, sample_to_template, grid_hw: tuple[int, int],
                     truth=None, linewidth: float = 0.7) -> tuple[int, int]:
    """Template and sample side by side with a line from each kept match's template cell to
    its sample cell (Figure 4's match lines; chapter 14).  ``sample_to_template`` ``[S]``
    (-1 = no match, as ``mutual_nearest_neighbours`` gives); with ``truth`` ``[S]`` (the
    ground-truth template cell, ``flow_to_cell_targets``) lines are green within one cell of
    it and red otherwise.  Returns (matches, matches within one cell)."""
    template_rgb, sample_rgb = to_display(template), to_display(sample)
    image_h, image_w = template_rgb.shape[:2]
    height, width = grid_hw
    cell_h, cell_w = image_h / height, image_w / width
    axis.imshow(np.concatenate([template_rgb, sample_rgb], axis=1))
    sample_to_template = np.asarray(sample_to_template)
    matched = np.flatnonzero(sample_to_template >= 0)
    targets = sample_to_template[matched]
    good = (within_one_cell(targets, np.asarray(truth)[matched], width) if truth is not None
            else np.ones(len(matched), bool))
    for target, cell, ok in zip(targets, matched, good, strict=True):
        x0, y0 = (target % width + 0.5) * cell_w - 0.5, (target // width + 0.5) * cell_h - 0.5
        x1, y1 = (cell % width + 0.5) * cell_w - 0.5, (cell // width + 0.5) * cell_h - 0.5
        axis.plot([x0, x1 + image_w], [y0, y1], linewidth=linewidth, alpha=0.8,
                  color=MATCH_COLOURS["within one cell" if ok else "elsewhere"])
    axis.set_xlim(-0.5, 2 * image_w - 0.5)
    axis.set_ylim(image_h - 0.5, -0.5)
    axis.axis("off")
    return len(matched), int(good.sum())


def comparison_grid(rows: list[dict], predictions: dict[str, list], *, max_columns: int = 10,
                    cell: float = 1.0, title_size: int = 9):
    """Figures 6-7 (chapter 14): for each pair, panels sample, template, ground truth and every
    method's prediction as TP / FP / FN overlays (``error_overlay``), wrapped after
    ``max_columns`` panels (the page is 10 inches wide), a legend below.  Titles name the panels
    of the first pair; the others follow the same order.  ``rows``: dataset items ("template",
    "sample", "mask"); ``predictions``: method label -> one ``[H, W]`` class map per row.
    Returns the figure."""
    if not rows:
        raise ValueError("need at least one row")
    for label, maps in predictions.items():
        if len(maps) != len(rows):
            raise ValueError(f"{label}: {len(maps)} predictions for {len(rows)} rows")
    titles = ["sample", "template", "ground truth", *predictions]
    columns = min(len(titles), max_columns)
    lines_per_pair = -(-len(titles) // columns)  # ceiling
    lines = len(rows) * lines_per_pair
    # square panels plus room for the titles above and the legend below; a wrapped pair has
    # titles above its second line too, so its lines need a gap
    gap = 0.25 if lines_per_pair > 1 else 0.05
    figure, axes = plt.subplots(lines, columns, squeeze=False,
                                figsize=(cell * columns, cell * (1 + gap) * lines + 0.9))
    for row, item in enumerate(rows):
        panels = [to_display(item["sample"]), to_display(item["template"]),
                  overlay_mask(item["sample"], item["mask"])]
        panels += [error_overlay(item["sample"], maps[row], item["mask"])
                   for maps in predictions.values()]
        for index in range(lines_per_pair * columns):
            axis = axes[row * lines_per_pair + index // columns, index % columns]
            if index >= len(panels):
                axis.axis("off")
                continue
            axis.imshow(panels[index])
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(titles[index], fontsize=title_size)
    figure.subplots_adjust(left=0.01, right=0.99, wspace=0.05, hspace=gap,
                           top=1 - 0.35 / figure.get_figheight(),
                           bottom=0.55 / figure.get_figheight())
    error_legend(figure, loc="lower center", fontsize=9, frameon=False)
    return figure
