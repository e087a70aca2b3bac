"""Match-guided alignment of the unmatched scales (align_fine_scales), against hand values,
numpy's least squares and naive slicing."""

import math

import numpy as np
import pytest
import torch

from bgnet_lite.methods.bgnet.config import BGNetConfig, Deviations
from bgnet_lite.methods.bgnet.deviations.alignment import (
    cell_centres,
    fit_similarity,
    warp_template,
)
from bgnet_lite.methods.bgnet.model import BGNet


def translated_matches(size: int, shift_x: int, shift_y: int) -> torch.Tensor:
    """sample_to_template [1, size*size] of a whole-cell shift (template = sample + shift)."""
    cells = []
    for y in range(size):
        for x in range(size):
            tx, ty = x + shift_x, y + shift_y
            inside = 0 <= tx < size and 0 <= ty < size
            cells.append(ty * size + tx if inside else -1)
    return torch.tensor([cells])


def test_cell_centres_are_row_major_edge_coordinates():
    centres = cell_centres(2, 3, 8)
    expected = [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert centres.tolist() == expected
    assert cell_centres(1, 2, (10.0, 4.0)).tolist() == [[2, 5], [6, 5]]  # (y, x) strides


def test_translation_by_whole_cells_is_recovered_exactly():
    transform = fit_similarity(translated_matches(8, 2, -1), (8, 8), 8)[0]
    assert torch.allclose(transform, torch.tensor([[1.0, 0, 16], [0, 1.0, -8]]), atol=1e-5)


def test_outliers_are_dropped_and_no_match_gives_the_identity():
    matches = translated_matches(8, 1, 1)
    matches[0, 0] = 63  # three wrong matches, many cells away from the true ones
    matches[0, 10] = 0
    matches[0, 20] = 7
    transform = fit_similarity(matches, (8, 8), 8)[0]
    assert torch.allclose(transform, torch.tensor([[1.0, 0, 8], [0, 1.0, 8]]), atol=1e-5)
    none = fit_similarity(torch.full((2, 16), -1), (4, 4), 8)
    assert torch.equal(none, torch.eye(2, 3).expand(2, 2, 3))
    one = torch.full((1, 16), -1)
    one[0, 5] = 10  # cell (1, 1) -> cell (2, 2): a translation by one cell
    assert torch.allclose(fit_similarity(one, (4, 4), 8)[0],
                          torch.tensor([[1.0, 0, 8], [0, 1.0, 8]]))


def test_rotation_fit_equals_numpy_least_squares_and_is_close_to_the_truth():
    angle, scale, shift = math.radians(5.0), 1.04, np.array([7.0, -3.0])
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)],
                                 [math.sin(angle), math.cos(angle)]])
    centres = cell_centres(16, 16, 8).numpy().astype(np.float64)
    true_points = centres @ rotation.T + shift
    cells = np.floor(true_points / 8).astype(int)
    inside = ((cells >= 0) & (cells < 16)).all(axis=1)
    matches = np.where(inside, cells[:, 1] * 16 + cells[:, 0], -1)
    transform = fit_similarity(torch.tensor(matches)[None], (16, 16), 8)[0].double().numpy()
    # the same 4-parameter fit with numpy: unknowns a, b, tx, ty
    q = centres[inside]
    p = (cells[inside] + 0.5) * 8
    design = np.zeros((2 * len(q), 4))
    design[0::2] = np.stack([q[:, 0], -q[:, 1], np.ones(len(q)), np.zeros(len(q))], axis=1)
    design[1::2] = np.stack([q[:, 1], q[:, 0], np.zeros(len(q)), np.ones(len(q))], axis=1)
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, p.reshape(-1), rcond=None)
    residual = np.linalg.norm(q @ transform[:, :2].T + transform[:, 2] - p, axis=1)
    assert (residual <= 12).all()  # no quantised match is an outlier, so none was dropped
    assert np.allclose(transform, [[a, -b, tx], [b, a, ty]], atol=1e-3)
    fitted = centres @ transform[:, :2].T + transform[:, 2]
    assert np.abs(fitted - true_points).max() < 2.0  # quantisation to 8-px cells averages out


def test_warp_identity_and_whole_cell_shift_against_slicing():
    template_map = torch.randn(1, 3, 6, 5)
    identity = torch.eye(2, 3)[None]
    assert torch.allclose(warp_template(template_map, identity, (24, 20)), template_map, atol=1e-5)
    shift = torch.tensor([[[1.0, 0, 8], [0, 1.0, -4]]])  # +2 cells in x, -1 cell in y at stride 4
    warped = warp_template(template_map, shift, (24, 20))
    expected = torch.zeros_like(template_map)
    expected[:, :, 1:, :3] = template_map[:, :, :5, 2:]
    assert torch.allclose(warped, expected, atol=1e-5)


def aligned_s4_on_random_pair(height: int, width: int):
    """An untrained S4 with align_fine_scales (theta 0: always some matches), a random pair and
    the model's output on it."""
    torch.manual_seed(0)
    model = BGNet(BGNetConfig(variant="S4", weights="none", theta=0.0,
                              deviations=Deviations(align_fine_scales=True))).eval()
    template, sample = torch.rand(1, 3, height, width), torch.rand(1, 3, height, width)
    with torch.no_grad():
        output = model.forward_details(template, sample)
    return model, template, sample, output


def test_model_aligns_the_unmatched_scales_only():
    with pytest.raises(ValueError, match="align_fine_scales needs matching"):
        BGNetConfig(variant="S2", deviations=Deviations(align_fine_scales=True))
    model, template, sample, output = aligned_s4_on_random_pair(64, 64)
    with torch.no_grad():
        template_feats, sample_feats = model.backbone(template), model.backbone(sample)
    expected_transform = fit_similarity(output["matches"][8].sample_to_template, (8, 8), 8)
    assert torch.equal(output["alignment"], expected_transform)
    for level in (0, 1, 3):
        aligned = warp_template(template_feats[level], expected_transform, (64, 64))
        assert torch.allclose(output["diff_feats"][level], sample_feats[level] - aligned,
                              atol=1e-4, rtol=1e-4)
    plain = BGNet(BGNetConfig(variant="S4", weights="none", theta=0.0)).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        plain_output = plain.forward_details(template, sample)
    for level in (2, 4):  # the matched scales are eq. 8 either way
        assert torch.equal(output["diff_feats"][level], plain_output["diff_feats"][level])


def test_model_aligns_images_its_maps_do_not_divide():
    output = aligned_s4_on_random_pair(100, 76)[3]
    assert output["logits"].shape == (1, 1, 100, 76)
    height, width = output["diff_feats"][2].shape[-2:]  # 13 x 10 at "1/8"
    expected = fit_similarity(output["matches"][8].sample_to_template, (height, width),
                              (100 / height, 76 / width))
    assert torch.equal(output["alignment"], expected)
