"""Kernel-free widgets for the rendered book (chapter 8, "Interactive lab").

The static HTML book has no kernel, so a control cannot call Python.  Instead every frame is
rendered in advance, all frames go into an ``ipywidgets.Stack`` of PNG ``ipywidgets.Image``
widgets, and the control's ``index`` is linked to the stack's ``selected_index`` with
``jslink``: a link the browser maintains by itself.  Executing the notebook with widget state
stored (nbclient ``store_widget_state=True``) saves the models, PNG bytes included, in the
notebook, and the book's offline widget manager replays them.

Frames are downscaled and palette-quantised so the notebook stays small; use
:func:`image_bytes` to report what a widget embeds.  :func:`live_widget` is the kernel-backed
variant for JupyterLab, where a callback renders each frame on demand.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets
import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CONTROLS = ("slider", "toggle")


# frames scale down to the page's width instead of making it scroll
_FIT_PAGE = {"max_width": "100%", "height": "auto"}


def frame_png(frame: Any, max_width: int = 1000, colors: int | None = 64) -> bytes:
    """One frame as small PNG bytes (chapter 8).

    ``frame`` is a ``PIL.Image``, a uint8 array ``[H, W]`` / ``[H, W, 3]`` / ``[H, W, 4]`` (or a
    float array in ``[0, 1]``), or a matplotlib ``Figure`` (rendered at its own dpi).  Wider
    frames are downscaled to ``max_width`` pixels (1000: the book's page width, so text drawn at
    9 pt or more stays readable); ``colors`` quantises to a palette of that
    many colours (``None`` keeps full RGB), which always holds the TP / FP / FN colours of
    ``viz.ERROR_COLOURS`` and the match-line colours of ``viz.MATCH_COLOURS`` exactly, so a
    small legend patch keeps the colour it names and a wrong match never turns false-positive
    orange.
    Transparency is flattened onto white.
    """
    image = _as_pil(frame)
    if image.width > max_width:
        height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, height), Image.Resampling.LANCZOS)
    if colors is not None:
        image = _quantize(image, colors)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _quantize(image: Image.Image, colors: int) -> Image.Image:
    """A palette image: ``colors`` minus the kept ones chosen by median cut, plus the kept."""
    from bgnet_lite.viz import ERROR_COLOURS, MATCH_COLOURS

    kept = [[round(255 * channel) for channel in rgb]
            for rgb in (*ERROR_COLOURS.values(), *MATCH_COLOURS.values())]
    adaptive = max(1, colors - len(kept))
    chosen = image.quantize(adaptive, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    entries = len(chosen.getpalette()) // 3  # median cut may return fewer than asked
    palette = chosen.getpalette()[: 3 * entries] + [value for rgb in kept for value in rgb]
    # unused entries repeat the first colour, so no pixel can map to a stray black
    palette += palette[:3] * (256 - len(palette) // 3)
    holder = Image.new("P", (1, 1))
    holder.putpalette(palette)
    return image.quantize(palette=holder, dither=Image.Dither.NONE)


def _as_pil(frame: Any) -> Image.Image:
    """RGB PIL image of a frame; transparent pixels become white."""
    if isinstance(frame, Image.Image):
        image = frame
    elif isinstance(frame, np.ndarray):
        image = Image.fromarray(_as_uint8(frame))
    elif hasattr(frame, "savefig"):  # a matplotlib Figure, without importing matplotlib here
        buffer = io.BytesIO()
        frame.savefig(buffer, format="png", dpi=frame.dpi)
        buffer.seek(0)
        image = Image.open(buffer)
        image.load()
    else:
        raise TypeError(f"a frame must be a PIL image, a numpy array or a matplotlib Figure, "
                        f"got {type(frame).__name__}")
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("RGB")


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"a frame array must be [H, W], [H, W, 3] or [H, W, 4], "
                         f"got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise ValueError("a float frame array must hold finite values in [0, 1]")
        return np.round(array * 255).astype(np.uint8)
    raise ValueError(f"a frame array must be uint8 or float in [0, 1], got {array.dtype}")


def _image_widget(frame: Any, index: int, max_width: int, colors: int | None) -> ipywidgets.Image:
    """An Image widget for a frame; an existing Image widget is reused (shares its bytes)."""
    if isinstance(frame, ipywidgets.Image):
        return frame
    image = ipywidgets.Image(value=frame_png(frame, max_width, colors), format="png",
                             layout=_FIT_PAGE)
    image.add_class(f"bgnet-frame-{index}")  # lets the browser test tell frames apart
    return image


def _labels(values: Sequence[Any], labels: Sequence[str] | None) -> list[str]:
    labels = [f"{value:g}" if isinstance(value, float) else str(value) for value in values] \
        if labels is None else [str(label) for label in labels]
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} labels for {len(values)} values")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {labels}")
    return labels


def _control(kind: str, labels: list[str], values: Sequence[Any],
             description: str) -> ipywidgets.DOMWidget:
    options = list(zip(labels, values, strict=True))
    if kind == "slider":
        return ipywidgets.SelectionSlider(options=options, index=0, description=description,
                                          continuous_update=True)
    if kind == "toggle":
        return ipywidgets.ToggleButtons(options=options, index=0, description=description)
    raise ValueError(f"control must be one of {CONTROLS}, got {kind!r}")


def frames_widget(frames: Sequence[Any], values: Sequence[Any], description: str = "θ", *,
                  control: str = "slider", labels: Sequence[str] | None = None,
                  max_width: int = 1000, colors: int | None = 64) -> ipywidgets.VBox:
    """A control over precomputed frames that works without a kernel (chapter 8).

    ``frames[i]`` is what to show for ``values[i]`` (PIL image, array, matplotlib Figure, or an
    ``ipywidgets.Image`` to share with another widget).  ``control`` is ``"slider"`` (a
    ``SelectionSlider``, e.g. for θ) or ``"toggle"`` (``ToggleButtons``, e.g. for the stack
    depth).  The control's ``index`` is ``jslink``-ed to a ``Stack`` of the frames.  The returned
    ``VBox`` also carries ``.control``, ``.stack`` and ``.links`` for tests and composition.
    """
    if len(frames) == 0 or len(frames) != len(values):
        raise ValueError(f"need one frame per value and at least one, got {len(frames)} frames "
                         f"for {len(values)} values")
    names = _labels(values, labels)
    stack = ipywidgets.Stack(
        children=[_image_widget(frame, i, max_width, colors) for i, frame in enumerate(frames)],
        selected_index=0)
    selector = _control(control, names, values, description)
    box = ipywidgets.VBox([selector, stack])
    box.add_class("bgnet-frames")
    box.control, box.stack = selector, stack
    box.links = [ipywidgets.jslink((selector, "index"), (stack, "selected_index"))]
    return box


def grid_widget(frames: Sequence[Sequence[Any]], row_values: Sequence[Any],
                col_values: Sequence[Any], row_description: str = "depth",
                col_description: str = "θ", *, row_labels: Sequence[str] | None = None,
                col_labels: Sequence[str] | None = None, max_width: int = 1000,
                colors: int | None = 64) -> ipywidgets.VBox:
    """Two kernel-free controls over a grid of frames, ``frames[row][col]`` (chapter 8).

    Rows (e.g. stack depth) get ``ToggleButtons`` linked to an outer ``Stack``; columns (e.g. θ)
    get a ``SelectionSlider`` linked to every row's inner ``Stack``, so both choices stay
    independent.  Labels default to the values (``:g`` for floats).  Returns a ``VBox`` with
    ``.row_control``, ``.col_control``, ``.stack`` (the outer one) and ``.links``.
    """
    if len(frames) == 0 or len(frames) != len(row_values):
        raise ValueError(f"need one row of frames per row value, got {len(frames)} rows for "
                         f"{len(row_values)} values")
    if any(len(row) != len(col_values) for row in frames):
        raise ValueError(f"every row needs one frame per column value ({len(col_values)})")
    row_control = _control("toggle", _labels(row_values, row_labels), row_values,
                           row_description)
    col_control = _control("slider", _labels(col_values, col_labels), col_values,
                           col_description)
    inner = []
    for r, row in enumerate(frames):
        images = [_image_widget(frame, r * len(col_values) + c, max_width, colors)
                  for c, frame in enumerate(row)]
        inner.append(ipywidgets.Stack(children=images, selected_index=0))
    outer = ipywidgets.Stack(children=inner, selected_index=0)
    box = ipywidgets.VBox([row_control, col_control, outer])
    box.add_class("bgnet-frames")
    box.row_control, box.col_control, box.stack = row_control, col_control, outer
    box.links = [ipywidgets.jslink((row_control, "index"), (outer, "selected_index"))]
    box.links += [ipywidgets.jslink((col_control, "index"), (stack, "selected_index"))
                  for stack in inner]
    return box


def live_widget(render: Callable[[Any], Any], values: Sequence[Any], description: str = "θ",
                *, control: str = "slider", labels: Sequence[str] | None = None,
                max_width: int = 1000, colors: int | None = None) -> ipywidgets.VBox:
    """A control whose frames ``render(value)`` draws on demand; needs a kernel (chapter 8).

    For JupyterLab, where any value can be explored without precomputing the grid.  In the
    static book only the first frame shows, so chapters use :func:`frames_widget` there.
    ``render`` returns anything :func:`frame_png` accepts.
    """
    if len(values) == 0:
        raise ValueError("need at least one value")
    selector = _control(control, _labels(values, labels), values, description)
    image = ipywidgets.Image(value=frame_png(render(values[0]), max_width, colors), format="png",
                             layout=_FIT_PAGE)

    def redraw(change: dict) -> None:
        image.value = frame_png(render(values[change["new"]]), max_width, colors)

    selector.observe(redraw, names="index")
    box = ipywidgets.VBox([selector, image])
    box.control, box.image = selector, image
    return box


def image_bytes(widget: ipywidgets.Widget) -> int:
    """Total PNG bytes of the distinct ``Image`` widgets inside ``widget`` (chapter 8).

    This is what executing the notebook embeds (before base64, which adds a third).
    """
    seen: dict[str, int] = {}

    def walk(node: ipywidgets.Widget) -> None:
        if isinstance(node, ipywidgets.Image):
            seen[node.model_id] = len(node.value)
        for child in getattr(node, "children", ()):
            walk(child)

    walk(widget)
    return sum(seen.values())
