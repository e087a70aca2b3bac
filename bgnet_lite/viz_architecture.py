"""BGNet drawn from its configuration: the paper's Figure 2 as boxes and arrows (preface and
chapter 6).  Everything written in the boxes (which blocks a variant has, the scales, the
channels, the depths, θ) is read from a :class:`BGNetConfig`, so the picture stays true to the
model the package builds."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from bgnet_lite.methods.bgnet.backbone import BACKBONE_CHANNELS, BACKBONE_STRIDES
from bgnet_lite.methods.bgnet.config import BGNetConfig

COLOURS = {"input": "#dbe9f6", "backbone": "#fde2c4", "attention": "#e6d7f2",
           "matching": "#d3efd6", "subtract": "#f7f3c6", "decoder": "#f6d3d3"}
FONT = 10  # points: the smallest text is FONT - 1 = 9, readable at the book's page width


def _box(axis, x, y, width, height, text, colour, size=FONT):
    axis.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                  boxstyle="round,pad=0.02,rounding_size=0.08",
                                  facecolor=colour, edgecolor="#555555", linewidth=0.8))
    axis.text(x, y, text, ha="center", va="center", fontsize=size)


def _arrow(axis, start, end, colour="#555555"):
    axis.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9,
                                   color=colour, linewidth=0.9, shrinkA=0, shrinkB=0))


def _scale_step(config: BGNetConfig, stride: int) -> tuple[str, str]:
    """(text, colour key) of what happens to the features of one scale."""
    at_attention_scale = stride in config.attention_scales
    if not config.siamese:
        return "features of T ⊕ S\n(no subtraction)", "subtract"
    parts, colour = [], "subtract"
    if config.attention and at_attention_scale:
        depth = config.depth_8 if stride == min(config.attention_scales) else config.depth_32
        parts.append(f"PE (eq. 9-10) + self/cross\nattention × {depth} (eq. 5-6, 11-12)")
        colour = "attention"
    if config.matching and at_attention_scale:
        parts.append(f"MNN match, θ = {config.theta:g} (eq. 7, 13-15)\n"
                     "matched subtraction (eq. 8)")
        colour = "matching"
    else:
        parts.append("$F^S - F^T$ in place\n(direct subtraction)")
    return "\n".join(parts), colour


def draw_bgnet(config: BGNetConfig | None = None, axis=None):
    """The architecture of ``config`` (default: the paper's S5) as a matplotlib figure
    (preface, chapter 6).  Returns the figure."""
    config = config or BGNetConfig()
    if axis is None:
        _, axis = plt.subplots(figsize=(10, 5.6))
    axis.set_xlim(0, 11.05)
    axis.set_ylim(-0.2, 6.0)
    axis.axis("off")
    rows = {stride: 5.2 - index * 1.15 for index, stride in enumerate(BACKBONE_STRIDES)}
    middle = sum(rows.values()) / len(rows)
    # 1. inputs
    if config.siamese:
        _box(axis, 0.75, middle + 1.1, 1.3, 0.7, "template T\n(defect-free)", COLOURS["input"])
        _box(axis, 0.75, middle - 1.1, 1.3, 0.7, "sample S", COLOURS["input"])
        backbone_text = "ResNet-18\nshared by\nT and S\n(Siamese)"
    else:
        _box(axis, 0.75, middle, 1.3, 0.9, "T ⊕ S\n(6 channels)", COLOURS["input"])
        backbone_text = "ResNet-18\non the\nconcatenated\npair"
    # 2. backbone, one output per scale
    _box(axis, 2.45, middle, 1.3, 5.3, backbone_text, COLOURS["backbone"])
    for source in ((middle + 1.1, middle - 1.1) if config.siamese else (middle,)):
        _arrow(axis, (1.4, source), (1.8, source))
    for stride, channels in zip(BACKBONE_STRIDES, BACKBONE_CHANNELS, strict=True):
        y = rows[stride]
        axis.text(3.2, y + 0.18, f"1/{stride}", fontsize=FONT, ha="left")
        axis.text(3.2, y - 0.22, f"{channels} ch", fontsize=FONT - 1, ha="left", color="#444")
        _arrow(axis, (3.1, y), (3.95, y))
        # 3. per-scale comparison of template and sample features
        text, colour = _scale_step(config, stride)
        _box(axis, 5.55, y, 3.1, 0.95, text, COLOURS[colour], size=FONT - 1)
        _arrow(axis, (7.1, y), (7.75, y))
    # 4. fusion decoder, deep to shallow
    widths = config.decoder_channels or BACKBONE_CHANNELS[-2::-1]
    decoder_text = ("multi-scale\nfusion\n(skip\nconnections,\n1/32 → 1/2)\n\nblock widths:\n"
                    + "\n".join(f"{width} ch" for width in widths))
    _box(axis, 8.55, middle, 1.5, 5.3, decoder_text, COLOURS["decoder"])
    _arrow(axis, (9.3, middle), (9.65, middle))
    classes = "1 (defect)" if config.num_classes == 1 else f"{config.num_classes} classes"
    _box(axis, 10.3, middle, 1.3, 1.2, f"logits\n{classes}\nH × W", COLOURS["input"])
    axis.set_title(f"BGNet variant {config.variant} (Table 1), as configured", fontsize=FONT + 2)
    return axis.figure
