"""Local matched subtraction (local_match_px) against a naive loop, hand values and the model."""

import pytest
import torch

from bgnet_lite.methods.bgnet.config import BGNetConfig, Deviations
from bgnet_lite.methods.bgnet.deviations.local_match import (
    local_matched_subtraction,
    window_displacements,
    window_radius,
)
from bgnet_lite.methods.bgnet.model import BGNet


def naive_local_subtraction(sample_map, template_map, radius):
    """The formula cell by cell: nearest template feature in the window, ties to the smallest
    max(|dy|, |dx|), then the smallest |dy| + |dx|, then the smallest (dy, dx)."""
    batch, channels, height, width = sample_map.shape
    out = torch.empty_like(sample_map)
    for n in range(batch):
        for y in range(height):
            for x in range(width):
                best = None
                for dy in range(-radius, radius + 1):
                    for dx in range(-radius, radius + 1):
                        ty, tx = y + dy, x + dx
                        if not (0 <= ty < height and 0 <= tx < width):
                            continue
                        dist = float(((sample_map[n, :, y, x] - template_map[n, :, ty, tx]) ** 2)
                                     .sum())
                        key = (dist, max(abs(dy), abs(dx)), abs(dy) + abs(dx), dy, dx)
                        if best is None or key < best[0]:
                            best = (key, ty, tx)
                _, ty, tx = best
                out[n, :, y, x] = sample_map[n, :, y, x] - template_map[n, :, ty, tx]
    return out


def test_window_radius_rounds_halves_up_and_zero_first():
    assert [window_radius(6, stride) for stride in (2, 4, 8, 16, 32)] == [3, 2, 1, 0, 0]
    assert window_radius(0, 2) == 0
    displacements = window_displacements(1)
    assert displacements[0] == (0, 0) and len(displacements) == 9
    assert set(displacements[1:5]) == {(-1, 0), (0, -1), (0, 1), (1, 0)}
    with pytest.raises(ValueError, match="local_match_px"):
        window_radius(-1, 2)


@pytest.mark.parametrize("radius", [1, 2])
def test_equals_the_naive_loop_on_random_maps(radius):
    generator = torch.Generator().manual_seed(radius)
    sample_map = torch.randn(2, 3, 5, 6, generator=generator)
    template_map = torch.randn(2, 3, 5, 6, generator=generator)
    expected = naive_local_subtraction(sample_map, template_map, radius)
    assert torch.allclose(local_matched_subtraction(sample_map, template_map, radius), expected)


def test_ties_keep_the_in_place_cell_and_quantised_maps_match_the_loop():
    # integer features with many exact ties
    generator = torch.Generator().manual_seed(0)
    sample_map = torch.randint(0, 2, (1, 2, 4, 4), generator=generator).float()
    template_map = torch.randint(0, 2, (1, 2, 4, 4), generator=generator).float()
    expected = naive_local_subtraction(sample_map, template_map, 1)
    assert torch.equal(local_matched_subtraction(sample_map, template_map, 1), expected)
    constant = torch.ones(1, 1, 3, 3)
    ramp = torch.arange(9.0).view(1, 1, 3, 3)
    # the template equals the sample everywhere: every cell subtracts itself (d = 0)
    assert torch.equal(local_matched_subtraction(ramp, ramp.clone(), 1), torch.zeros(1, 1, 3, 3))
    assert torch.equal(local_matched_subtraction(constant, constant * 2, 1), -constant)


def test_a_shifted_component_is_cancelled_but_a_new_one_is_not():
    template_map = torch.zeros(1, 1, 8, 8)
    template_map[0, 0, 2:4, 2:4] = 5.0  # a component
    sample_map = torch.zeros(1, 1, 8, 8)
    sample_map[0, 0, 3:5, 4:6] = 5.0  # the same component moved by (1, 2) cells
    sample_map[0, 0, 6, 0] = 3.0  # a defect with nothing like it in the template
    in_place = sample_map - template_map
    local = local_matched_subtraction(sample_map, template_map, 2)
    assert in_place.abs().sum() == 8 * 5.0 + 3.0  # both copies of the component light up
    expected = torch.zeros(1, 1, 8, 8)
    expected[0, 0, 6, 0] = 3.0  # only the defect survives
    assert torch.equal(local, expected)
    # a window too small for the move leaves part of it
    assert local_matched_subtraction(sample_map, template_map, 1).abs().sum() > 3.0


def test_gradients_reach_both_maps_through_the_chosen_cells():
    sample_map = torch.zeros(1, 1, 3, 3, requires_grad=True)
    template_map = torch.zeros(1, 1, 3, 3)
    template_map[0, 0, 1, 1] = 9.0  # every cell keeps its own d = 0 except the centre
    template_map.requires_grad_(True)
    local_matched_subtraction(sample_map, template_map, 1).sum().backward()
    assert torch.equal(sample_map.grad, torch.ones(1, 1, 3, 3))
    # the centre chose d = (-1, 0), the first of its four nearest zero cells: cell (0, 1) is
    # subtracted twice and the centre's own cell never
    expected = -torch.ones(1, 1, 3, 3)
    expected[0, 0, 1, 1] = 0.0
    expected[0, 0, 0, 1] = -2.0
    assert torch.equal(template_map.grad, expected)


def test_model_uses_it_at_the_unmatched_scales_only():
    torch.manual_seed(0)
    plain = BGNet(BGNetConfig(variant="S4", weights="none")).eval()
    local = BGNet(BGNetConfig(variant="S4", weights="none",
                                  deviations=Deviations(local_match_px=6))).eval()
    local.load_state_dict(plain.state_dict())
    template, sample = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        plain_diffs = plain.forward_details(template, sample)["diff_feats"]
        local_diffs = local.forward_details(template, sample)["diff_feats"]
        template_feats, sample_feats = local.siamese_features(template, sample)
    # 1/8 and 1/32 are matched (eq. 8) and 1/16 has radius 0: unchanged
    for level in (2, 3, 4):
        assert torch.equal(plain_diffs[level], local_diffs[level])
    for level, radius in ((0, 3), (1, 2)):
        assert not torch.equal(local_diffs[level], plain_diffs[level])
        # the loop on a 10 x 10 crop; cells at least `radius` inside the crop see the same window
        expected = naive_local_subtraction(sample_feats[level][..., :10, :10],
                                           template_feats[level][..., :10, :10], radius)
        inner = slice(radius, 10 - radius)
        assert torch.allclose(local_diffs[level][..., inner, inner], expected[..., inner, inner],
                              atol=1e-5)
