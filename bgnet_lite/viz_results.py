"""Figures of the reproduced results: the robustness curve (chapter 11) and the tables' bars
(chapters 12-13), in one style: text at least 9 pt at the book's page width, one colour per
method everywhere."""

from __future__ import annotations

import math
import statistics

import matplotlib.pyplot as plt

from bgnet_lite.reproduce.specs import TABLES, curve_setting

FONT = 10  # points
# one colour per table row, the same in every figure; S1-S5 share BGNet's family of blues
METHOD_COLOURS = {
    "S1": "#9ecae1", "S2": "#6baed6", "S3": "#4292c6", "S4": "#2171b5", "S5": "#08306b",
    "BGNet": "#08306b", "U-Net": "#e6550d", "classical AOI": "#31a354",
    "FCN": "#fd8d3c", "SegNet": "#fdae6b", "DeepLabV3+": "#a63603", "PGANet": "#d94801",
    "CCNet": "#756bb1", "DUNet": "#9e9ac8", "DANet": "#54278f", "Swin U-Net": "#bcbddc",
    "TGRNet": "#969696", "PFENet": "#636363", "Siamese U-Net": "#c51b8a",
    "DSSSNet": "#f768a1", "GWNet": "#7a0177",
}
MOTION_MARKERS = {"shift": "^", "rotation": "s"}


def curve_points(results: dict, metric: str = "defect_iou") -> list[dict]:
    """The robustness results as points (chapter 11): one per row label and setting, with the
    variation, the motion, and the mean, min and max of ``metric`` over seeds."""
    groups: dict[tuple[str, str], list[float]] = {}
    for cell in results["cells"].values():
        value = cell["metrics"].get(metric)
        if value is not None and not math.isnan(value):
            groups.setdefault((cell["label"], cell["setting"]), []).append(value)
    points = []
    for (label, setting), values in groups.items():
        data = curve_setting(setting)
        points.append({"label": label, "setting": setting, "variation": data.variation,
                       "motion": data.motion, "mean": statistics.fmean(values),
                       "min": min(values), "max": max(values), "seeds": len(values)})
    return sorted(points, key=lambda p: (p["label"], p["motion"], p["variation"]))


def plot_robustness(results: dict, metric: str = "defect_iou", moderate: float | None = None,
                    axis=None, ylabel: str = "defect IoU on unseen batches"):
    """The robustness curve (chapter 11): ``metric`` against the generator's variation, a line
    through the seeds' mean and a band from their min to max per method; shift-only and
    rotation-only points as triangles and squares; the moderate setting as a dashed line."""
    points = curve_points(results, metric)
    if axis is None:
        _, axis = plt.subplots(figsize=(7.5, 4.2))
    order = [row.label for row in TABLES["robustness"].rows]
    labels = sorted(dict.fromkeys(p["label"] for p in points),
                    key=lambda label: order.index(label) if label in order else len(order))
    for label in labels:
        colour = METHOD_COLOURS.get(label)
        line = [p for p in points if p["label"] == label and p["motion"] == "all"]
        xs = [p["variation"] for p in line]
        axis.plot(xs, [p["mean"] for p in line], "o-", color=colour, label=label, lw=1.8)
        axis.fill_between(xs, [p["min"] for p in line], [p["max"] for p in line],
                          color=colour, alpha=0.18, lw=0)
        for point in points:
            if point["label"] == label and point["motion"] in MOTION_MARKERS:
                axis.plot(point["variation"], point["mean"], MOTION_MARKERS[point["motion"]],
                          color=colour, markersize=8, markerfacecolor="white", mew=1.8)
    for motion, marker in MOTION_MARKERS.items():
        axis.plot([], [], marker, color="black", markerfacecolor="white", mew=1.5,
                  label=f"{motion} only")
    if moderate is not None:
        axis.axvline(moderate, color="black", ls="--", lw=1)
        axis.annotate(f"moderate = {moderate:g}", (moderate, 1.0),
                      xycoords=("data", "axes fraction"), xytext=(4, -14),
                      textcoords="offset points", fontsize=FONT)
    axis.set_xlabel("background motion: the generator's variation (1 = strong, the default)",
                    fontsize=FONT)
    axis.set_ylabel(ylabel, fontsize=FONT)
    axis.tick_params(labelsize=FONT)
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=FONT - 1, ncol=2, frameon=False)
    return axis


def plot_table(results: dict, setting: str, metric: str = "miou", axis=None,
               xlabel: str | None = None, paper: bool = True):
    """One column of a reproduced table as horizontal bars (chapters 12-13): our mean over seeds
    per row, each seed as a dot, and the paper's value (on its own data) as a black tick."""
    from bgnet_lite.reproduce.claims import seed_values
    from bgnet_lite.reproduce.report import paper_values

    table = results["table"]
    order = [row.label for row in TABLES[table].rows]
    values = seed_values(results, setting, metric)  # {label: [per-seed values]}
    labels = [label for label in order if label in values]
    if axis is None:
        _, axis = plt.subplots(figsize=(7.5, 0.36 * len(labels) + 1.2))
    for position, label in enumerate(labels):
        colour = METHOD_COLOURS.get(label, "#888888")
        axis.barh(position, statistics.fmean(values[label]), color=colour, alpha=0.85)
        axis.plot(values[label], [position] * len(values[label]), "o", color="black",
                  markersize=3)
        theirs = paper_values(table, label).get(metric) if paper else None
        if theirs is not None:
            axis.plot(theirs, position, "|", color="black", markersize=14, mew=2)
    if paper:
        axis.plot([], [], "|", color="black", markersize=10, mew=2, label="paper (its data)")
        axis.plot([], [], "o", color="black", markersize=3, label="ours, one seed")
        axis.legend(fontsize=FONT - 1, loc="lower right", frameon=True)
    axis.set_yticks(range(len(labels)), labels, fontsize=FONT)
    axis.invert_yaxis()
    axis.set_xlabel(xlabel or metric, fontsize=FONT)
    axis.tick_params(labelsize=FONT)
    axis.grid(axis="x", alpha=0.3)
    return axis
