"""Kernel-free frame widgets of chapter 8 (bgnet_lite.widgets)."""

from __future__ import annotations

import io

import ipywidgets
import matplotlib
import numpy as np
import pytest
from ipywidgets.widgets.widget_link import Link
from PIL import Image

from bgnet_lite.widgets import (
    PNG_SIGNATURE,
    frame_png,
    frames_widget,
    grid_widget,
    image_bytes,
    live_widget,
)

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402


def gradient(width: int, height: int, shift: int = 0) -> np.ndarray:
    """A [H, W, 3] uint8 test picture whose content depends on ``shift``."""
    ys, xs = np.mgrid[0:height, 0:width]
    red = (xs * 255 // max(width - 1, 1) + shift) % 256
    green = ys * 255 // max(height - 1, 1)
    blue = np.full_like(xs, (shift * 37) % 256)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def decode(png) -> np.ndarray:
    png = bytes(png)  # Image.value is a memoryview
    assert png.startswith(PNG_SIGNATURE)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def is_linked(box, widget_a, trait_a, widget_b, trait_b) -> bool:
    """Whether one of the box's jslinks joins the traits in its saved state (what browsers read)."""
    wanted = {"source": [f"IPY_MODEL_{widget_a.model_id}", trait_a],
              "target": [f"IPY_MODEL_{widget_b.model_id}", trait_b]}
    for link in box.links:
        assert isinstance(link, Link)
        state = link.get_state()
        assert state["_model_name"] == "LinkModel"
        if {key: list(state[key]) for key in ("source", "target")} == wanted:
            return True
    return False


def test_slider_index_is_jslinked_to_stack():
    values = [0.1, 0.2, 0.3, 0.4]
    box = frames_widget([gradient(32, 16, s) for s in range(4)], values)
    slider = box.children[0]
    stack = box.children[1]
    assert isinstance(slider, ipywidgets.SelectionSlider)
    assert isinstance(stack, ipywidgets.Stack)
    assert is_linked(box, slider, "index", stack, "selected_index")
    assert len(stack.children) == len(values)
    assert slider.options == tuple(zip(["0.1", "0.2", "0.3", "0.4"], values, strict=True))


def test_toggle_control_for_depths():
    box = frames_widget([gradient(8, 8, s) for s in range(3)], [1, 2, 4], "depth",
                        control="toggle")
    toggle, stack = box.children
    assert isinstance(toggle, ipywidgets.ToggleButtons)
    assert toggle.options == (("1", 1), ("2", 2), ("4", 4))
    assert is_linked(box, toggle, "index", stack, "selected_index")
    assert len(stack.children) == 3


def test_frames_are_small_pngs_of_the_input():
    frame = gradient(200, 100, 7)
    box = frames_widget([frame, gradient(200, 100, 90)], [0.0, 1.0], max_width=100,
                        colors=None)
    first = box.children[1].children[0]
    assert first.format == "png"
    decoded = decode(first.value)
    reference = np.asarray(Image.fromarray(frame).resize((100, 50), Image.Resampling.LANCZOS))
    assert decoded.shape == reference.shape
    assert np.abs(decoded.astype(int) - reference.astype(int)).max() <= 1
    assert image_bytes(box) == sum(len(img.value) for img in box.children[1].children)


def test_palette_quantisation_limits_colours():
    png = frame_png(gradient(64, 64, 3), colors=16)
    assert Image.open(io.BytesIO(png)).mode == "P"
    assert len(np.unique(decode(png).reshape(-1, 3), axis=0)) <= 16


def test_quantisation_keeps_the_overlay_colours_exact():
    # a busy picture with small patches in the TP / FP / FN colours (values typed from the
    # legend's definition: blue, orange, magenta) and the match lines' green and red
    frame = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    exact = [(26, 115, 255), (255, 140, 0), (242, 13, 191), (0, 255, 0), (255, 0, 0)]
    for index, rgb in enumerate(exact):
        frame[10:14, 10 + 20 * index:14 + 20 * index] = rgb
    decoded = decode(frame_png(frame, colors=32))
    for index, rgb in enumerate(exact):
        assert decoded[12, 12 + 20 * index].tolist() == list(rgb)
    assert len(np.unique(decoded.reshape(-1, 3), axis=0)) <= 32


def test_figure_pil_and_float_frames():
    fig = Figure(figsize=(2, 1), dpi=50)
    fig.patch.set_facecolor((1.0, 0.0, 0.0))
    assert decode(frame_png(fig, colors=None)).shape == (50, 100, 3)
    assert (decode(frame_png(fig, colors=None))[10, 10] == [255, 0, 0]).all()
    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert (decode(frame_png(transparent, colors=None)) == 255).all()
    assert (decode(frame_png(np.full((4, 4), 0.5), colors=None)) == 128).all()


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 2), np.uint8), np.full((2, 2), 2.0),
                                 np.zeros((2, 2), np.int64), "frame.png"])
def test_bad_frames_are_rejected(bad):
    with pytest.raises((TypeError, ValueError)):
        frame_png(bad)


def test_mismatched_lengths_and_duplicate_labels_are_rejected():
    with pytest.raises(ValueError, match="one frame per value"):
        frames_widget([gradient(4, 4)], [0.1, 0.2])
    with pytest.raises(ValueError, match="distinct"):
        frames_widget([gradient(4, 4)] * 2, [0.1, 0.1])
    with pytest.raises(ValueError, match="control"):
        frames_widget([gradient(4, 4)], [0.1], control="dial")


def test_grid_links_rows_and_columns():
    depths, thetas = [1, 2], [0.1, 0.5, 0.9]
    grid = [[gradient(8, 8, 10 * d + t) for t in range(3)] for d in range(2)]
    box = grid_widget(grid, depths, thetas, col_labels=["lo", "mid", "hi"])
    toggle, slider, outer = box.children
    assert slider.options == (("lo", 0.1), ("mid", 0.5), ("hi", 0.9))
    assert toggle.options == (("1", 1), ("2", 2))
    assert len(outer.children) == len(depths)
    assert is_linked(box, toggle, "index", outer, "selected_index")
    for inner in outer.children:
        assert len(inner.children) == len(thetas)
        assert is_linked(box, slider, "index", inner, "selected_index")
    shown = decode(outer.children[1].children[2].value)
    assert np.array_equal(shown, decode(frame_png(grid[1][2])))


def test_shared_image_widgets_are_counted_once():
    box = frames_widget([gradient(8, 8, s) for s in range(3)], [1, 2, 3])
    reuse = frames_widget(list(box.stack.children), [1, 2, 3], control="toggle")
    assert reuse.stack.children == box.stack.children
    both = ipywidgets.VBox([box, reuse])
    assert image_bytes(both) == image_bytes(box)


def test_live_widget_redraws_on_change():
    calls = []

    def render(shift):
        calls.append(shift)
        return gradient(16, 16, shift)

    box = live_widget(render, [0, 40, 80], "shift", colors=None)
    assert calls == [0]
    box.control.index = 2
    assert calls == [0, 80]
    assert np.array_equal(decode(box.image.value), gradient(16, 16, 80))
