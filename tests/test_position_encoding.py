"""Eq. 9-10 against numbers written out by hand."""

import math

import pytest
import torch

from bgnet_lite.methods.bgnet.position_encoding import PositionEncodingSine, sine_position_encoding


def test_matches_hand_computed_values_c8_h2_w3():
    channels, height, width = 8, 2, 3
    # w_k = 1 / 10000^(2k / C): for C = 8, w_0 = 1 and w_1 = 10000^(-1/4) = 0.1 exactly
    omegas = [1.0, 0.1]
    expected = torch.empty(channels, height, width, dtype=torch.float64)
    for k, omega in enumerate(omegas):
        for y in range(height):
            for x in range(width):
                expected[4 * k + 0, y, x] = math.sin(x * omega)
                expected[4 * k + 1, y, x] = math.cos(x * omega)
                expected[4 * k + 2, y, x] = math.sin(y * omega)
                expected[4 * k + 3, y, x] = math.cos(y * omega)
    encoding = sine_position_encoding(channels, height, width, dtype=torch.float64)
    assert encoding.shape == (channels, height, width)
    torch.testing.assert_close(encoding, expected, rtol=0, atol=1e-12)


def test_second_frequency_is_exactly_eq9_not_loftr_bug():
    # LoFTR's first release used 10000^(-2k / (C/2)): w_1 would be 0.01 for C = 8
    encoding = sine_position_encoding(8, 1, 3, dtype=torch.float64)
    assert encoding[4, 0, 1].item() == pytest.approx(math.sin(0.1), abs=1e-12)
    assert encoding[5, 0, 2].item() == pytest.approx(math.cos(0.2), abs=1e-12)
    assert encoding[4, 0, 1].item() != pytest.approx(math.sin(0.01), abs=1e-6)


def test_x_is_column_and_y_is_row():
    encoding = sine_position_encoding(4, 3, 5, dtype=torch.float64)
    # channel 0 = sin(x): constant down a column, varies along a row
    assert torch.allclose(encoding[0, 0], encoding[0, 2])
    assert encoding[0, 0, 1].item() == pytest.approx(math.sin(1.0))
    assert encoding[2, 1, 0].item() == pytest.approx(math.sin(1.0))
    assert encoding[3, 2, 4].item() == pytest.approx(math.cos(2.0))


@pytest.mark.parametrize("channels", [0, 6, 10, 130])
def test_channels_not_divisible_by_4_raise(channels):
    with pytest.raises(ValueError, match="divisible by 4"):
        sine_position_encoding(channels, 2, 2)
    with pytest.raises(ValueError, match="divisible by 4"):
        PositionEncodingSine(channels)


def test_module_adds_encoding_and_keeps_dtype():
    feats = torch.randn(2, 8, 2, 3)
    out = PositionEncodingSine(8)(feats)
    assert out.dtype == feats.dtype and out.shape == feats.shape
    expected = feats + sine_position_encoding(8, 2, 3)[None]
    torch.testing.assert_close(out, expected)
    # eq. 10 with x = 1, y = 0, channel 4 (k = 1): sin(0.1)
    assert (out - feats)[1, 4, 0, 1].item() == pytest.approx(math.sin(0.1), abs=1e-6)


def test_module_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="expected feature maps"):
        PositionEncodingSine(8)(torch.zeros(1, 4, 2, 2))
