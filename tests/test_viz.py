"""The book's shared figures: the TP / FP / FN overlay."""

import numpy as np

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
