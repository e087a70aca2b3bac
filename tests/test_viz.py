"""The book's shared figures: the TP / FP / FN overlay, match lines, the comparison grid."""

import numpy as np
import pytest

from bgnet_lite.viz import ERROR_COLOURS, error_overlay


def test_error_overlay_colours_each_outcome():
    image = np.zeros((6, 6))
    prediction = np.zeros((6, 6), bool)
    truth = np.zeros((6, 6), bool)
    prediction[0:3, 0:3] = True  # 3x3 predicted
    truth[1:4, 1:4] = True  # 3x3 true, overlapping in 2x2
    shown = error_overlay(image, prediction, truth, alpha=1.0)
    expected = np.zeros((6, 6, 3))
    for y in range(6):
        for x in range(6):  # naive per-pixel rule
            if prediction[y, x] and truth[y, x]:
                expected[y, x] = ERROR_COLOURS["true positive"]
            elif prediction[y, x]:
                expected[y, x] = ERROR_COLOURS["false positive"]
            elif truth[y, x]:
                expected[y, x] = ERROR_COLOURS["false negative"]
    assert np.allclose(shown, expected, atol=1e-6)


def test_within_one_cell_by_hand():
    from bgnet_lite.viz import within_one_cell

    # a 4-wide grid: cell 5 is (row 1, col 1); its 8 neighbours and itself are near
    truth = np.full(16, 5)
    near = within_one_cell(np.arange(16), truth, 4)
    assert np.flatnonzero(near).tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert not within_one_cell(np.array([5]), np.array([-1]), 4).any()  # no truth
    assert not within_one_cell(np.array([3]), np.array([4]), 4).any()  # (0, 3) vs (1, 0)


def test_match_lines_count_and_colour():
    import matplotlib.pyplot as plt

    from bgnet_lite.viz import draw_match_lines

    image = np.zeros((16, 16, 3), np.float32)
    # 2 x 2 cells of 8 px; sample cells 0 and 3 matched, 0 correctly, 3 to cell 0 (truth 3 is
    # (1, 1), 0 is (0, 0): one cell away diagonally, so near); cell 1 matched to 2 with truth 1
    figure, axis = plt.subplots()
    matches, near = draw_match_lines(axis, image, image, np.array([0, 2, -1, 0]), (2, 2),
                                     truth=np.array([0, 1, 3, 3]))
    assert (matches, near) == (3, 3)
    lines = axis.get_lines()
    assert len(lines) == 3
    # the line of sample cell 0 runs from template (3.5, 3.5) to sample (3.5 + 16, 3.5)
    assert lines[0].get_xdata().tolist() == [3.5, 19.5] and lines[0].get_ydata().tolist() == [
        3.5, 3.5]
    plt.close(figure)


def test_comparison_grid_has_a_panel_per_method_and_row():
    import matplotlib.pyplot as plt

    from bgnet_lite.viz import comparison_grid

    item = {"sample": np.zeros((8, 8, 3)), "template": np.zeros((8, 8, 3)),
            "mask": np.eye(8, dtype=int)}
    figure = comparison_grid([item, item], {"A": [np.eye(8), np.zeros((8, 8))],
                                            "B": [np.ones((8, 8)), np.eye(8)]})
    assert len(figure.axes) == 2 * 5
    assert [axis.get_title() for axis in figure.axes[:5]] == ["sample", "template",
                                                              "ground truth", "A", "B"]
    assert all(axis.get_title() == "" for axis in figure.axes[5:])  # second pair: no titles
    plt.close(figure)
    # 12 methods: 15 panels per pair wrap into 2 lines of 10, the last 5 axes left empty
    many = {f"M{k}": [np.eye(8), np.eye(8)] for k in range(12)}
    figure = comparison_grid([item, item], many)
    assert len(figure.axes) == 2 * 2 * 10 and figure.get_figwidth() <= 10
    titled = [axis.get_title() for axis in figure.axes[:20]]
    assert titled[:15] == ["sample", "template", "ground truth", *many] and titled[15:] == [""] * 5
    assert [axis.axison for axis in figure.axes[15:20]] == [False] * 5
    plt.close(figure)
    with pytest.raises(ValueError, match="A: 1 predictions for 2 rows"):
        comparison_grid([item, item], {"A": [np.eye(8)]})


def test_figure_jpeg_looks_like_the_png_and_is_smaller():
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    from bgnet_lite.viz import figure_jpeg

    def heat_map_figure():
        figure, axis = plt.subplots(figsize=(4, 3))
        rows, columns = np.mgrid[0:96, 0:128]
        axis.imshow(np.sin(rows / 9.0) * np.cos(columns / 13.0)
                    + 0.05 * np.random.default_rng(0).random((96, 128)), cmap="jet")
        return figure

    reference = io.BytesIO()
    heat_map_figure().savefig(reference, format="png", bbox_inches="tight")
    png = np.asarray(Image.open(reference).convert("RGB"), dtype=np.float32)

    figure = heat_map_figure()
    jpeg_bytes = figure_jpeg(figure)
    assert jpeg_bytes[:2] == b"\xff\xd8"  # the JPEG start-of-image marker
    assert not plt.fignum_exists(figure.number)  # closed: the notebook shows it only once
    jpeg = np.asarray(Image.open(io.BytesIO(jpeg_bytes)).convert("RGB"), dtype=np.float32)
    assert jpeg.shape == png.shape
    assert np.abs(jpeg - png).mean() < 4.0  # of 255: the same picture
    assert len(jpeg_bytes) < len(reference.getvalue()) / 2
    plt.close("all")
